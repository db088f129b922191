"""One SentencePiece model shared by every task: trained from the training text, stored inside the checkpoint.

Byte fallback is on, so no input character is ever unknown: a character the model never saw becomes its
UTF-8 bytes. Ids 0-3 are fixed (pad, unk, bos, eos) so heads can rely on them.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable

import sentencepiece as spm

from lstmtext.errors import UsageError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
# SentencePiece drops training lines longer than this many bytes; long documents are split to fit.
_MAX_SENTENCE_BYTES = 4000


def _training_lines(texts: Iterable[str], max_sentences: int, seed: int) -> list[str]:
    """Reservoir-sample non-empty lines so a corpus larger than memory still trains in bounded memory."""
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            while line:
                piece, line = line[: _MAX_SENTENCE_BYTES // 4], line[_MAX_SENTENCE_BYTES // 4 :]
                seen += 1
                if len(sample) < max_sentences:
                    sample.append(piece)
                else:
                    j = rng.randrange(seen)
                    if j < max_sentences:
                        sample[j] = piece
    return sample


def _within_chars(lines: list[str], max_chars: int, seed: int) -> list[str]:
    """At most ``max_chars`` characters of the sample: a seeded choice of its lines, kept in their order. The
    SentencePiece trainer's memory grows with the text it is given, many times over, so the sample is bounded in
    characters as well as in lines (lines of reviews are far longer than lines of an encyclopedia)."""
    if max_chars <= 0 or sum(map(len, lines)) <= max_chars:
        return lines
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    keep, total = [], 0
    for i in order:
        total += len(lines[i])
        if total > max_chars:
            break
        keep.append(i)
    return [lines[i] for i in sorted(keep)]


class Tokenizer:
    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.model_proto)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError depending on the version
            raise UsageError(f"the stored SentencePiece model cannot be read ({e})") from None

    # -- training -------------------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        model_type: str = "unigram",
        character_coverage: float = 0.9995,
        max_sentences: int = 300_000,
        seed: int = 1,
        max_chars: int = 0,
    ) -> Tokenizer:
        lines = _within_chars(_training_lines(texts, max_sentences, seed), max_chars, seed)
        if not lines:
            raise UsageError("cannot train a tokenizer: the training text is empty")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines),
                model_writer=model,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                byte_fallback=True,
                hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary rather than an error
                pad_id=PAD,
                unk_id=UNK,
                bos_id=BOS,
                eos_id=EOS,
                input_sentence_size=0,  # already sampled above
                max_sentence_length=_MAX_SENTENCE_BYTES * 4,
                split_digits=True,
                num_threads=2,
                minloglevel=2,  # otherwise thousands of log lines go to stderr
            )
        except RuntimeError as e:
            raise UsageError(f"SentencePiece could not train on this text: {e}") from None
        return cls(model.getvalue())

    # -- encoding -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.sp.GetPieceSize()

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.Encode(texts, out_type=int, num_threads=1)

    def encode_one(self, text: str) -> list[int]:
        return self.sp.Encode(text, out_type=int)

    def pieces(self, text: str) -> list[str]:
        return self.sp.Encode(text, out_type=str)

    def decode(self, ids: list[int]) -> str:
        return self.sp.Decode([i for i in ids if i > EOS])

    def encode_words(self, words: list[str]) -> tuple[list[int], list[int]]:
        """Pieces of a pre-split sentence and, for each word, the index of its first piece.

        Each word is encoded on its own, so word boundaries never fall inside a piece (needed for tagging).
        A word that normalises to nothing (a lone control character) still gets one piece: the unknown id.
        """
        ids: list[int] = []
        first: list[int] = []
        for word_ids in self.sp.Encode(words, out_type=int):
            first.append(len(ids))
            ids.extend(word_ids or [UNK])
        return ids, first
