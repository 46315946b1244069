"""Run config is checked in full before a run exists.

Dagster checks a run config's shape and types (and enum choices) when it is launched, but
a `dg.Config` class's pydantic rules (`Field(gt=0, le=…)`, validators) only when the op
starts — so `batch_size: -5` used to become a failed run feeding the failure alerts. Here
every op's config schema gets the class's own validation as its post-processing step,
which Dagster runs while resolving the run config: when the UI or `dagster job execute`
builds the execution plan, before the run is created. A rejection is one line per field.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
from dagster._config.config_type import ConfigTypeKind
from dagster._config.errors import PostProcessingError
from dagster._config.field_utils import _ConfigHasFields, _define_shape_key_hash
from dagster._core.definitions.definition_config_schema import DefinitionConfigSchema


def config_error_line(error) -> str:
    """A pydantic ValidationError as one line: `field: message (got value)` for each error."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "config"
        parts.append(f"{where}: {item.get('msg', 'invalid')} (got {item.get('input')!r})")
    return "; ".join(parts)


class ValidatedShape(_ConfigHasFields):
    """A strict shape whose post-processing runs a `dg.Config` class's pydantic validation."""

    def __init__(self, fields, model: type[dg.Config], description: str | None = None):
        super().__init__(
            fields=fields,
            kind=ConfigTypeKind.STRICT_SHAPE,
            key=f"{_define_shape_key_hash(fields, description, None)}.{model.__qualname__}",
            description=description,
        )
        self.field_aliases: dict[str, str] = {}
        self.model = model

    def post_process(self, value):
        from pydantic import ValidationError

        try:
            self.model(**value)
        except ValidationError as error:
            raise PostProcessingError(
                f"invalid {self.model.__name__}: {config_error_line(error)}"
            ) from None
        return value


def _config_class(op_def: dg.OpDefinition) -> type[dg.Config] | None:
    compute_fn = op_def.compute_fn
    if not hasattr(compute_fn, "has_config_arg") or not compute_fn.has_config_arg():
        return None
    annotation = compute_fn.get_config_arg().annotation
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, dg.Config) else None
    )


def check_config_at_launch(op_defs: Iterable[dg.OpDefinition]) -> int:
    """Give every op whose config is a `dg.Config` class the class's validation at launch;
    returns how many ops were changed."""
    changed = 0
    for op_def in op_defs:
        model = _config_class(op_def)
        field = op_def.config_schema.as_field() if model else None
        if field is None or isinstance(field.config_type, ValidatedShape):
            continue
        shape = ValidatedShape(field.config_type.fields, model, field.config_type.description)
        keep = {"default_value": field.default_value} if field.default_provided else {}
        op_def._config_schema = DefinitionConfigSchema(  # noqa: SLF001 - no public setter
            dg.Field(shape, description=field.description, is_required=field.is_required, **keep)
        )
        changed += 1
    return changed


def op_defs_of(defs: dg.Definitions) -> list[dg.OpDefinition]:
    """Every op of the definitions: those of op jobs and those computing assets."""
    found: dict[int, dg.OpDefinition] = {}
    for job in defs.jobs or []:
        if isinstance(job, dg.JobDefinition):
            for node_def in job.all_node_defs:
                if isinstance(node_def, dg.OpDefinition):
                    found[id(node_def)] = node_def
    for asset in defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition) and asset.is_executable:
            node_def = asset.node_def
            if isinstance(node_def, dg.OpDefinition):
                found[id(node_def)] = node_def
    return list(found.values())
