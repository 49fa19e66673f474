"""Configs: the frozen types (`schema`), reading YAML with lines and bounds (`source`),
validation (`parse`) and scale warnings (`lint`). Every check of user input lives here."""

from .lint import lint_space
from .parse import (NAME_MAX, FUNCTION_RE, load_config, parse_config, parse_space, run_name_from, valid_name,
                    with_overrides)
from .schema import BUILTIN_DATASETS, BUILTIN_METRICS, Config, DataConfig, ObjectiveConfig, SearchConfig

__all__ = ["BUILTIN_DATASETS", "BUILTIN_METRICS", "Config", "DataConfig", "FUNCTION_RE", "NAME_MAX", "ObjectiveConfig",
           "SearchConfig", "lint_space", "load_config", "parse_config", "parse_space", "run_name_from", "valid_name",
           "with_overrides"]
