"""Configs: the frozen types (`schema`), reading YAML with lines and bounds (`source`),
validation (`parse`) and scale warnings (`lint`). Every check of user input lives here."""

from .lint import lint_space
from .parse import FUNCTION_RE, load_config, parse_config, parse_space, with_overrides
from .schema import (BUILTIN_DATASETS, BUILTIN_METRICS, NAME_MAX, Config, DataConfig, ObjectiveConfig, SearchConfig,
                     run_name_from, valid_name)

__all__ = ["BUILTIN_DATASETS", "BUILTIN_METRICS", "Config", "DataConfig", "FUNCTION_RE", "NAME_MAX", "ObjectiveConfig",
           "SearchConfig", "lint_space", "load_config", "parse_config", "parse_space", "run_name_from", "valid_name",
           "with_overrides"]
