"""Detector types, chosen in configuration: ``detector: {type: lartpc | segcube, ...}``.

:data:`DETECTOR_TYPES` maps a type name to its configuration class (a
:class:`~sparsenu.sim.config.DetectorBase`: its parameters, its material and its response).
:data:`AnyDetector` is the annotation that accepts any of them (a ``type`` key picks the class;
without one, ``lartpc``, so configurations and files written before detector types existed
still load). Everything else calls the detector's methods and never branches on the type.

Adding a detector type: write its ``DetectorBase`` subclass with ``type: Literal["name"]``
and register it here.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError

from sparsenu.config import ConfigModel, format_validation_error
from sparsenu.errors import SparsenuError
from sparsenu.sim.config import DetectorBase, DetectorConfig, SimConfig
from sparsenu.sim.segcube import SegCubeConfig

__all__ = ["DETECTOR_TYPES", "DEFAULT_DETECTOR_TYPE", "AnyDetector", "detector_from_dict", "detector_class",
           "check_override_names", "SimulationConfig"]

#: Registered detector types: name -> configuration class.
DETECTOR_TYPES: dict[str, type[DetectorBase]] = {"lartpc": DetectorConfig, "segcube": SegCubeConfig}
#: The type of a detector mapping without a ``type`` key.
DEFAULT_DETECTOR_TYPE = "lartpc"


def _type_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("type", DEFAULT_DETECTOR_TYPE))
    return str(getattr(value, "type", DEFAULT_DETECTOR_TYPE))


def _any_detector() -> Any:
    members = tuple(Annotated[cls, Tag(name)] for name, cls in DETECTOR_TYPES.items())
    if len(members) == 1:
        return DETECTOR_TYPES[DEFAULT_DETECTOR_TYPE]
    known = ", ".join(DETECTOR_TYPES)
    disc = Discriminator(_type_of, custom_error_type="unknown_detector_type",
                         custom_error_message=f"Unknown detector 'type'; known types: {known}")
    return Annotated[Union[members], disc]  # noqa: UP007 - a runtime tuple of members


#: Annotation of a field holding a detector of any registered type.
if TYPE_CHECKING:
    AnyDetector = DetectorBase
else:
    AnyDetector = _any_detector()


def detector_class(name: str) -> type[DetectorBase]:
    """The configuration class of detector type ``name`` (``SparsenuError`` naming the known ones)."""
    try:
        return DETECTOR_TYPES[name]
    except KeyError:
        raise SparsenuError(f"unknown detector type {name!r}; known types: {', '.join(DETECTOR_TYPES)}") from None


def detector_from_dict(data: Mapping[str, Any], source: str | None = None) -> DetectorBase:
    """A detector of the type named by ``data['type']`` (default ``lartpc``), validated.

    Raises
    ------
    SparsenuError
        Unknown type, unknown key or bad value, naming the key and ``source``.
    """
    cls = detector_class(_type_of(data))
    try:
        out: DetectorBase = TypeAdapter(cls).validate_python(dict(data))
        return out
    except ValidationError as exc:
        raise format_validation_error(exc, cls, source) from None


def check_override_names(names: Iterable[str], numeric: bool = False) -> None:
    """``ValueError`` for a name that no registered detector type has as a field (``numeric``:
    as a real-valued field); the type-specific check happens when the overrides are applied
    (:meth:`~sparsenu.sim.config.DetectorBase.shifted`)."""
    for name in names:
        errors = []
        for cls in DETECTOR_TYPES.values():
            try:
                cls.check_names([name], numeric=numeric)
                break
            except ValueError as exc:
                errors.append(str(exc))
        else:
            raise ValueError(errors[0])


class SimulationConfig(ConfigModel):
    """What to simulate: a run seed, the generator and the detector (any registered type).

    The file of ``sparsenu simulate CONFIG`` and the base of every block that simulates
    data sets (a training run's ``data.simulate``, a benchmark suite's ``data``)::

        seed: 12345
        sim: {...}        # SimConfig fields (fiducial volume, energy ranges, classes, min_voxels)
        detector: {...}   # type (lartpc | segcube) and that type's fields
    """

    seed: int = Field(0, ge=0, lt=2**63)
    sim: SimConfig = Field(default_factory=SimConfig)
    detector: AnyDetector = Field(default_factory=DetectorConfig)
