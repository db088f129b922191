"""Task heads. Each takes encoder states and the batch and returns (logits, loss); none reads the recipe.

A head whose output layer is the encoder's embedding (the LM's, the translator's) names it in
``tied_embeddings``, a tuple rather than a submodule: the state dict then stores the shared weight once, as
``encoder.embed.weight`` (safetensors refuses two names for one tensor), and code that treats embeddings apart
(training/optim.py's sparse gradients) learns from it which ones a dense output layer also reads.

The heads' variants are named here, in a module without torch, so the task options (read for ``--help`` and
recipe checks, which must not import torch) offer exactly the values the heads accept.
"""

POOLINGS = ("maxmean", "max", "mean", "attention")  # ClassifyHead: over the real tokens of a sequence
WORD_STATES = ("first", "span")  # TagHead: which encoder states stand for a word
ATTENTIONS = ("general", "dot", "bahdanau")  # Seq2Seq: the attention score


# The CRF's tag schemes, here without torch because an exported tagger (tasks/ner_onnx.py) decodes with them too.
def _may_follow(frm: str, to: str, bioes: bool) -> bool:
    if bioes and frm[:2] in ("B-", "I-"):  # BIOES: an entity that B-/I- opened must go on, of its own type
        return to in (f"I-{frm[2:]}", f"E-{frm[2:]}")
    if to[:2] in ("I-", "E-"):  # continues an entity: in BIO only one of its own type (in BIOES none is open)
        return not bioes and frm[:2] in ("B-", "I-") and frm[2:] == to[2:]
    return True


def allowed_moves(labels: list[str]) -> tuple[list[list[bool]], list[bool], list[bool]]:
    """(allowed transitions [from][to], allowed first tags, allowed last tags) for tag names O, B-X, I-X and,
    in BIOES, E-X (an entity's last word) and S-X (a one-word entity)."""
    bioes = any(t[:2] in ("E-", "S-") for t in labels)
    trans = [[_may_follow(a, b, bioes) for b in labels] for a in labels]
    start = [_may_follow("O", b, bioes) for b in labels]
    end = [_may_follow(a, "O", bioes) for a in labels]
    return trans, start, end


def bioes_labels(labels: list[str]) -> list[str]:
    """The CRF's tags for BIO labels in BIOES: O, then B-, I-, E-, S- of every type."""
    kinds = list(dict.fromkeys(t[2:] for t in labels if t != "O"))
    return ["O"] + [f"{p}-{k}" for k in kinds for p in "BIES"]


def bio_ids(crf_labels: list[str], labels: list[str]) -> list[int]:
    """Per BIOES tag of the CRF, the id of its BIO label in ``labels``: E-X continues an entity (I-X), S-X begins
    one (B-X)."""
    back = {"O": "O", "B": "B", "I": "I", "E": "I", "S": "B"}
    bio = {t: i for i, t in enumerate(labels)}
    return [bio.get(t if t == "O" else f"{back[t[0]]}-{t[2:]}", 0) for t in crf_labels]
