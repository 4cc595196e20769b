"""Optional "FID (Inception)" (evaluation.md §3): NOT IMPLEMENTED in this version.

The spec enables Inception FID only when a locally supplied Inception-v3 weights file is named
in the config (``inception_weights``); weights are never downloaded at run time. The intended
reference behaviour is pytorch-fid's: pool3 features (2048-d) of images resized bilinearly to
299×299, grayscale replicated to 3 channels (see third_party/README.md, "Inception weights").

This module only guards the option: without a file it says one is needed, and with a file it
refuses clearly, because the Inception-v3 network and its weight import are not implemented.
Every reported Fréchet distance of jaxunlearn is therefore "FID (classifier features)".
"""

from __future__ import annotations

import os

from jaxunlearn.errors import UserInputError


def check_inception_weights(weights_path: str | None) -> None:
  """Validates ``inception_weights``; always raises UserInputError (not implemented).

  Raises:
    UserInputError: no file given, the file does not exist, or (for an existing file) because
      FID (Inception) is not implemented; leave ``inception_weights`` empty to run without it.
  """
  if not weights_path:
    raise UserInputError("FID (Inception) needs a locally supplied Inception-v3 weights file "
                         "(config field inception_weights); weights are never downloaded")
  if not os.path.isfile(weights_path):
    raise UserInputError(f"inception_weights={weights_path!r} does not exist; name a local "
                         "Inception-v3 weights file or leave the field empty")
  raise UserInputError("FID (Inception) is not implemented in this version of jaxunlearn; leave "
                       "--config.inception_weights empty (FID-clf is always reported)")
