"""Stand-in SAEs for splice tests: the identity, one that counts the frames it is given, and zero."""
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
