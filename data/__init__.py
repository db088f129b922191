"""The embedded samples (TASK/train.* and TASK/dev.*), installed as the package lstmtext.samples so that
``lstmtext train TASK`` finds them wherever lstmtext is installed (lstmtext.data.sample_path).

The make_*.py scripts beside them regenerate the samples (python data/make_samples.py); they install
as modules too, harmless: they only run when run as scripts.
"""
