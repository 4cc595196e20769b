"""The one exception type that means "the user asked for something invalid".

Entry points catch :class:`UserInputError`, print its message on one line and exit
with status 2 before anything is written to the workdir; a :class:`NonFiniteError` ends a run
with status 3, keeping its last good checkpoint.
"""


class UserInputError(ValueError):
  """Invalid user input: the message says what was wrong and what is valid."""


class NonFiniteError(RuntimeError):
  """A loss or parameter became NaN/Inf; the message names the step and the quantity."""
