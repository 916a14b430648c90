"""ufo-nas: hardware-aware architecture search for UFO multi-task vision transformers."""

from ufo_nas.errors import ArchError, CheckpointError, SpecError, UfoError
from ufo_nas.space import Arch, SearchSpace, load_space
from ufo_nas.spec import SpaceSpec, TaskSpec, load_space_spec

__all__ = [
    "Arch",
    "ArchError",
    "CheckpointError",
    "SearchSpace",
    "SpaceSpec",
    "SpecError",
    "TaskSpec",
    "UfoError",
    "load_space",
    "load_space_spec",
]
__version__ = "0.1.0"
