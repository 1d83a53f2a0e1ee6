"""Errors whose message tells the user what to do; the CLI prints them without a traceback."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
  """A config value is not allowed. The message names the field, the value and the rule."""

  def __init__(self, field: str, value: Any, allowed: str):
    self.field, self.value, self.allowed = field, value, allowed
    super().__init__(f'config field `{field}` = {value!r} is not allowed: {allowed}')
