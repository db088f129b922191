"""Generation from an LM checkpoint's forward stack: the prompts run once, then one piece at a time per row,
sampled (``generate`` and ``lstmtext predict`` on an LM)."""

from __future__ import annotations

from lstmtext.errors import UsageError
from lstmtext.tokenizer import BOS, EOS, PAD, UNK

# Sampling defaults of ``generate`` and ``predict``: a little below temperature 1 with nucleus 0.95 keeps a
# small LM's text readable without making it repeat itself the way greedy decoding does.
GEN_DEFAULTS = {"max_tokens": 100, "temperature": 0.8, "top_k": 0, "top_p": 0.95}
# Bounds that keep generation's memory in proportion to its output: a row is decoded again as it grows, and
# each row holds a vocabulary-wide row of logits at every step.
MAX_TOKENS = 10_000
MAX_SAMPLES = 1_000
# A prompt runs through the LSTMs at once, its activations held for the whole prompt; only its last pieces are
# read (the state after them is what the continuation depends on, and a few thousand pieces reach far past what
# an LSTM carries).
MAX_PROMPT_PIECES = 4096


class Generator:
    """The state machine behind an LM Predictor: ``model``, ``tok`` and ``device`` are the Predictor's."""

    def __init__(self, model, tok, device):
        self.model, self.tok, self.device = model, tok, device
        enc = model.encoder
        self.cell_kind = enc.cell
        self.cells = enc.forward_cells()
        self.stats = {"pieces": 0}

    def _start(self, prompt_ids: list[list[int]]):
        """Run the forward stack once over the prompts (packed, so each keeps its own last state).

        Returns (state per layer, logits of the next piece (P, V))."""
        import torch

        from lstmtext.tasks.common import pad

        enc = self.model.encoder
        tokens = pad(prompt_ids).to(self.device)  # (P, T)
        lengths = torch.tensor([len(p) for p in prompt_ids])
        _, hidden = enc.forward_stack(enc.embed(tokens), lengths=lengths)  # (L, P, H) each, after each prompt
        if self.cell_kind == "lstm":
            h, c = hidden
            state = [(h[k], c[k]) for k in range(h.size(0))]
        else:
            state = [hidden[k] for k in range(hidden.size(0))]
        return state, self.model.head.forward_logits(hidden[0][-1] if self.cell_kind == "lstm" else hidden[-1])

    def _step(self, ids, state):
        """One piece per row (B,) → (new state, next logits (B, V)); never looks at the prefix again."""
        x = self.model.encoder.embed(ids)  # (B, E)
        new = []
        for cell, s in zip(self.cells, state):
            s = cell(x, s)
            x = s[0] if self.cell_kind == "lstm" else s
            new.append(s)
        return new, self.model.head.forward_logits(x)

    def next_logits(self, prefix_ids: list[int]):
        """Next-piece logits after a prefix (used to check the stepped state against a full recomputation)."""
        import torch

        with torch.inference_mode():
            state, logits = self._start([prefix_ids[:1]])
            for i in prefix_ids[1:]:
                state, logits = self._step(torch.tensor([i], device=self.device), state)
        return logits[0]

    def generate(
        self,
        prompts: list[str],
        max_tokens: int = GEN_DEFAULTS["max_tokens"],
        temperature: float = GEN_DEFAULTS["temperature"],
        top_k: int = GEN_DEFAULTS["top_k"],
        top_p: float = GEN_DEFAULTS["top_p"],
        num_samples: int = 1,
        seed: int | None = None,
        stop: str | None = None,
    ):
        """Continue each prompt ``num_samples`` times, all rows decoded together as one batch.

        Yields (prompt index, sample index, text, done) as text is produced: the first text of each row is
        its prompt, then continuation as it grows (whole pieces, never a half character), and ``done`` once
        when the row ends (end of line, ``stop`` reached — it is not written — or ``max_tokens`` pieces).
        Joining a row's texts gives its output line. Each prompt samples from its own generator seeded with
        ``seed``, so a prompt's text depends on the prompt, the seed and the settings only.
        """
        import torch

        from lstmtext.decoding import make_generator, sample

        check_generate(prompts, max_tokens, temperature, top_k, top_p, num_samples, seed)
        N = num_samples
        prompt_ids = [[EOS] + self._prompt_pieces(p) for p in prompts]
        prefix_text = [self.tok.decode(p) for p in prompt_ids]
        rows = len(prompts) * N
        gen: list[list[int]] = [[] for _ in range(rows)]
        emitted = [0] * rows
        done = [False] * rows
        for r in range(rows):
            yield r // N, r % N, prompts[r // N].rstrip(), False
        # One generator per prompt: a prompt's text depends on its seed only, not on which prompts share its batch.
        gens = [make_generator(seed, self.device) for _ in prompts]
        self.stats = {"pieces": 0}  # pieces generated so far over all rows (for speed measurements)
        self.model.eval()
        with torch.inference_mode():
            state, logits = self._start(prompt_ids)
            # each prompt's state, repeated for its samples: (P, H) → (P·N, H), rows prompt-major
            state = [
                tuple(t.repeat_interleave(N, 0) for t in s) if isinstance(s, tuple) else s.repeat_interleave(N, 0)
                for s in state
            ]
            logits = logits.repeat_interleave(N, 0)  # (P·N, V)
            banned = torch.tensor([PAD, UNK, BOS], device=logits.device)
            for step in range(max_tokens):
                logits[:, banned] = float("-inf")
                ids = torch.cat(
                    [sample(logits[i * N : (i + 1) * N], temperature, top_k, top_p, g) for i, g in enumerate(gens)]
                )  # (P·N,)
                last = step == max_tokens - 1
                for r, i in enumerate(ids.tolist()):
                    if done[r]:
                        continue
                    finished = i == EOS or last
                    self.stats["pieces"] += 1
                    if i != EOS:
                        gen[r].append(i)
                    text = self.tok.decode(prompt_ids[r // N] + gen[r])[len(prefix_text[r // N]) :]
                    text = text.replace("\n", " ").replace("\r", " ")
                    if stop and stop in text:
                        text, finished = text[: text.index(stop)], True
                    if not finished:
                        # hold back what may be the start of the stop string or of a character still in bytes
                        keep = len(text) - (len(stop) - 1 if stop else 0)
                        while keep > 0 and text[keep - 1] == "\ufffd":
                            keep -= 1
                        text = text[: max(keep, emitted[r])]
                    if len(text) > emitted[r] or finished:
                        yield r // N, r % N, text[emitted[r] :], finished
                        emitted[r] = len(text)
                    done[r] = finished
                if all(done):
                    break
                state, logits = self._step(ids, state)

    def _prompt_pieces(self, prompt: str) -> list[int]:
        """The prompt's pieces, its last MAX_PROMPT_PIECES of them where it is longer (with a note)."""
        from lstmtext.progress import note

        ids = self.tok.encode_one(prompt.strip())
        if len(ids) > MAX_PROMPT_PIECES:
            note(f"a prompt of {len(ids)} pieces: generating from its last {MAX_PROMPT_PIECES}")
            ids = ids[-MAX_PROMPT_PIECES:]
        return ids

    def generate_text(self, prompts: list[str], **kwargs) -> list[list[str]]:
        """The whole lines: [prompt][sample] → text (prompt included)."""
        n = kwargs.get("num_samples", 1)
        out = [["" for _ in range(n)] for _ in prompts]
        for i, j, text, _ in self.generate(prompts, **kwargs):
            out[i][j] += text
        return out


def check_generate(
    prompts: list[str],
    max_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    num_samples: int,
    seed: int | None = None,
) -> None:
    from lstmtext.decoding import check_sampling, check_seed

    for p in prompts:
        if not p.strip():
            raise UsageError("empty prompt: give some text to continue, e.g. --prompt 'The history of'")
    if not 1 <= max_tokens <= MAX_TOKENS:
        raise UsageError(f"--max-tokens {max_tokens}: expected a number of pieces from 1 to {MAX_TOKENS:,}")
    if not 1 <= num_samples <= MAX_SAMPLES:
        raise UsageError(f"--num-samples {num_samples}: expected from 1 to {MAX_SAMPLES:,} samples per prompt")
    check_sampling(temperature, top_k, top_p)
    check_seed(seed)
