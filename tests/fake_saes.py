"""Stand-ins for tests: SAEs for splice tests (the identity, one that counts the frames it is given, zero) and
a tokenizer for the tiny random-init Whisper."""
import torch


class Identity(torch.nn.Module):
    cfg = type("C", (), {"hook_name": ""})()

    def forward(self, x, mode=None):
        return x


class Recorder(Identity):
    """Identity that counts the frames it is asked to reconstruct."""

    def __init__(self):
        super().__init__()
        self.rows = 0

    def forward(self, x, mode=None):
        self.rows += x.shape[0]
        return x


class Zero(Identity):
    def forward(self, x, mode=None):
        return torch.zeros_like(x)


class FakeTokenizer:
    """Token ids as words (the random model has no vocabulary); id 89 plays <|nospeech|>."""

    unk_token_id = 95

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"w{int(i)}" for i in ids if int(i) < 88)

    def convert_tokens_to_ids(self, name):
        return 89 if name == "<|nospeech|>" else self.unk_token_id
