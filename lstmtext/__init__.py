"""lstmtext: one SentencePiece tokenizer and one BiLSTM encoder feeding four task heads.

The package import is kept light (no torch) so that the CLI's ``--help`` stays fast;
``lstmtext.load`` imports torch when it is called. docs/design.md describes how the package is arranged:
its layers, the data path, the task contract, the encoder and heads, recipes, training and the checkpoint.
"""

__version__ = "0.1.0"


def load(path, device: str = "cpu", int8: bool = False):
    """Load a checkpoint and return its task's Predictor: ``predict`` for every task, and ``generate`` for a
    language model, ``translate`` for a translation model. ``predict`` takes a list of texts (one result each, None for a blank one) or one
    string (its one result). With a model of the sentiment sample (``lstmtext train sentiment -o sentiment.ckpt``):

    >>> model = lstmtext.load("sentiment.ckpt")
    >>> model.predict("a gorgeous, witty film")
    {'label': '1', 'score': 0.9848, 'scores': {'0': 0.0152, '1': 0.9848}}
    >>> model.predict(["a gorgeous, witty film", "", "the plot is tedious ."])
    [{'label': '1', 'score': 0.9848, 'scores': {'0': 0.0152, '1': 0.9848}}, None, {'label': '0', 'score': 0.9492, 'scores': {'0': 0.9492, '1': 0.0508}}]

    int8=True runs the model's LSTMs (or GRUs) with int8 weights on the CPU (``--precision int8``), for the tasks whose
    PRECISIONS list int8 (sentiment and ner).
    """
    from lstmtext.api import load as _load
    from lstmtext.api import quantize_int8

    predictor = _load(path, device=device)
    if int8:
        quantize_int8(predictor)
    return predictor
