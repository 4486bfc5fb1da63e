"""Where and in what precision a policy runs."""

from dataclasses import dataclass

import torch

from vlarena.errors import ConfigError, UnknownNameError

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


@dataclass(frozen=True)
class DeviceConfig:
    """Device, precision and compilation of a loaded policy."""

    device: str = "cpu"  # "cpu", "cuda", "cuda:N", "mps" or "auto" (best available)
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" weights and activations
    compile: bool = False  # wrap the networks in torch.compile (slow first call, faster after)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UnknownNameError("precision", self.precision, PRECISIONS)
        self.torch_device()  # fail at configuration time, not at the first request

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def torch_device(self) -> torch.device:
        """The resolved device; raises ConfigError if it does not exist on this machine."""
        if self.device == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise ConfigError(
                f"invalid device {self.device!r}; use cpu, cuda, cuda:N, mps or auto"
            ) from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(f"device {self.device!r} requested but CUDA is not available")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ConfigError(
                    f"device {self.device!r} requested but only "
                    f"{torch.cuda.device_count()} CUDA device(s) exist"
                )
        elif device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' requested but MPS is not available")
        elif device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"unsupported device {self.device!r}; use cpu, cuda, cuda:N, mps")
        return device
