"""FID (Inception): preprocessing, the FID Inception-v3 network, the pytorch-fid weight importer.

Without torch (CI): shapes and per-sample outputs of the network on random weights, the
converter on a synthetic NumPy state dict and its refusals, the checks of the weights file.
With torch: jax.image.resize against F.interpolate, and a random pytorch-fid-format file
(torch.save) read through the importer and compared with an independent forward written
below in torch.nn.functional (NCHW, OIHW weights, torch's pooling and BatchNorm).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import parallel
from jaxunlearn.errors import UserInputError
from jaxunlearn.eval import inception
from jaxunlearn.models.inception import FIDInceptionV3, preprocess
from random_inception import random_array, random_state_dict, random_variables
from third_party import fid_inception


def _images(n: int, size: int = 32, channels: int = 1, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


def _network(variables) -> inception.InceptionNetwork:
  return inception.InceptionNetwork(FIDInceptionV3(), variables, {"id": inception.INCEPTION_ID})


def test_preprocess_resizes_replicates_gray_and_keeps_the_range():
  gray = _images(2)
  x = preprocess(jnp.asarray(gray), 75)
  assert x.shape == (2, 75, 75, 3)
  np.testing.assert_array_equal(x[..., 0], x[..., 2])
  np.testing.assert_allclose(x, preprocess(jnp.asarray(np.repeat(gray, 3, -1)), 75), atol=1e-6)
  assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
  # No rescaling: a constant image in [-1, 1] stays that constant.
  np.testing.assert_allclose(preprocess(jnp.full((1, 32, 32, 3), -0.5), 80), -0.5, atol=1e-6)
  with pytest.raises(ValueError, match="1 or 3"):
    preprocess(jnp.zeros((1, 32, 32, 2)))
  with pytest.raises(ValueError, match="below 75"):
    jax.eval_shape(FIDInceptionV3(74).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_network_gives_per_sample_pool3_features():
  # Shapes: 4 images per batch (the report test compiles the same function).
  network, images = _network(random_variables()), _images(5)
  mesh = parallel.make_mesh()
  features = network.predict(images, mesh, batch_size=4)
  assert features["features"].shape == (5, 2048) and features["labels"].tolist() == [-1] * 5
  f = features["features"]
  assert np.all(np.isfinite(f)) and f.min() >= 0.0  # means of ReLU outputs
  assert np.abs(f[0] - f[1]).max() > 1e-3
  # Image 4 alone in a zero-padded batch, then among others: the same features.
  again = network.predict(images[[4, 0, 1, 2]], mesh, batch_size=4)["features"]
  np.testing.assert_allclose(again[0], f[4], rtol=1e-5, atol=1e-5)


def test_converter_maps_every_key_and_ignores_the_classifier():
  sd = random_state_dict(1)
  sd["Mixed_5b.branch1x1.bn.num_batches_tracked"] = np.asarray(7)
  variables = fid_inception.convert_state_dict(sd)
  expected = fid_inception.expected_keys()
  assert len(expected) == 94 * 5  # 94 BasicConv2d, each conv.weight + 4 BatchNorm arrays
  for key, shape in {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
                     "Conv2d_4a_3x3.bn.running_mean": (192,),
                     "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
                     "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
                     "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
                     "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
                     "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
                     "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
                     "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1)}.items():
    assert expected[key] == shape, key
  leaf_names = {"weight": None, "bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"),
                "running_var": ("batch_stats", "var")}
  for key, value in sd.items():
    if key.startswith("fc.") or key.endswith("num_batches_tracked"):
      continue
    *modules, layer, leaf = key.split(".")
    collection, name = leaf_names[leaf] or ("params", "kernel" if layer == "conv" else "scale")
    node = variables[collection]
    for m in modules + [layer]:
      node = node[m]
    np.testing.assert_array_equal(node[name], value.transpose(2, 3, 1, 0) if value.ndim == 4
                                  else value)
  assert len(jax.tree.leaves(variables)) == 94 * 5


@pytest.mark.parametrize("change, message", [
    ("missing", "missing keys Mixed_6c.branch7x7dbl_3.bn.running_var"),
    ("unexpected", "unexpected keys AuxLogits.fc.weight"),
    ("shape", "wrong shapes Mixed_5b.branch1x1.conv.weight (64, 192, 3, 3) "
              "(expected (64, 192, 1, 1))"),
])
def test_converter_refuses_a_state_dict_that_does_not_fit(change, message):
  sd = {k: np.zeros(s, np.float32) for k, s in fid_inception.expected_keys().items()}
  if change == "missing":
    del sd["Mixed_6c.branch7x7dbl_3.bn.running_var"]
  elif change == "unexpected":
    sd["AuxLogits.fc.weight"] = np.zeros((1008, 768), np.float32)
  else:
    sd["Mixed_5b.branch1x1.conv.weight"] = np.zeros((64, 192, 3, 3), np.float32)
  with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
    fid_inception.convert_state_dict(sd)


def test_weights_file_is_checked(tmp_path):
  with pytest.raises(UserInputError, match="needs a locally supplied Inception-v3 weights file"):
    inception.load_inception("")
  with pytest.raises(UserInputError, match="does not exist"):
    inception.load_inception(str(tmp_path / "missing.pth"))
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not a torch file")
  # With torch the file is unreadable; without it, reading needs torch: both one clear line.
  with pytest.raises(UserInputError, match="not a readable PyTorch state dict|pip install torch"):
    inception.load_inception(str(garbage))


def test_fid_inception_uses_the_project_frechet_distance():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(400, 3)), rng.normal(1.0, 1.0, size=(300, 3))
  result = inception.fid_inception(a, b)
  assert set(result) == {"fid_inception", "fid_eps_used", "n_gen", "n_real", "feature_dim"}
  assert result["fid_inception"] == pytest.approx(3.0, abs=0.3)  # ‖μ₁ − μ₂‖² = 3
  assert inception.fid_inception(a, a)["fid_inception"] == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# With torch: resize equivalence and an independent forward of a pytorch-fid-format file.

def _torch():
  return pytest.importorskip("torch")


@pytest.mark.parametrize("size_in, size_out", [(32, 299), (32, 75), (50, 37)])
def test_resize_matches_torch_interpolate(size_in, size_out):
  torch = _torch()
  x = _images(2, size_in, 3, seed=size_in)
  ours = np.asarray(preprocess(jnp.asarray(x), size_out))
  ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2),
                                        size=(size_out, size_out), mode="bilinear",
                                        align_corners=False).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(ours, ref, atol=1e-5)


class _TorchFID:
  """pytorch-fid's FID Inception-v3 forward in torch.nn.functional (NCHW).

  Each BasicConv2d's random weights are created on first use, under pytorch-fid's key names;
  ``sd`` then is a complete state dict of the network (plus the counters torch saves).
  """

  def __init__(self, torch, seed: int):
    self.torch, self.f = torch, torch.nn.functional
    self.rng = np.random.default_rng(seed)
    self.sd = {}

  def conv(self, name, x, out, kernel=1, stride=1, padding=0):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if f"{name}.conv.weight" not in self.sd:
      shapes = {"conv.weight": (out, x.shape[1], kh, kw), "bn.weight": (out,), "bn.bias": (out,),
                "bn.running_mean": (out,), "bn.running_var": (out,)}
      for leaf, shape in shapes.items():
        self.sd[f"{name}.{leaf}"] = self.torch.from_numpy(
            random_array(f"{name}.{leaf}", shape, self.rng))
      self.sd[f"{name}.bn.num_batches_tracked"] = self.torch.tensor(0)
    sd = self.sd
    y = self.f.conv2d(x, sd[f"{name}.conv.weight"], stride=stride, padding=padding)
    y = self.f.batch_norm(y, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"],
                          sd[f"{name}.bn.weight"], sd[f"{name}.bn.bias"], training=False,
                          eps=0.001)
    return self.f.relu(y)

  def avg_pool(self, x):
    return self.f.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

  def block_a(self, p, x, pool_features):
    c = self.conv
    b1 = c(f"{p}.branch1x1", x, 64)
    b5 = c(f"{p}.branch5x5_2", c(f"{p}.branch5x5_1", x, 48), 64, 5, padding=2)
    b3 = c(f"{p}.branch3x3dbl_2", c(f"{p}.branch3x3dbl_1", x, 64), 96, 3, padding=1)
    b3 = c(f"{p}.branch3x3dbl_3", b3, 96, 3, padding=1)
    bp = c(f"{p}.branch_pool", self.avg_pool(x), pool_features)
    return self.torch.cat([b1, b5, b3, bp], 1)

  def block_b(self, p, x):
    c = self.conv
    b3 = c(f"{p}.branch3x3", x, 384, 3, stride=2)
    bd = c(f"{p}.branch3x3dbl_2", c(f"{p}.branch3x3dbl_1", x, 64), 96, 3, padding=1)
    bd = c(f"{p}.branch3x3dbl_3", bd, 96, 3, stride=2)
    return self.torch.cat([b3, bd, self.f.max_pool2d(x, 3, stride=2)], 1)

  def block_c(self, p, x, c7):
    c = self.conv
    b1 = c(f"{p}.branch1x1", x, 192)
    b7 = c(f"{p}.branch7x7_2", c(f"{p}.branch7x7_1", x, c7), c7, (1, 7), padding=(0, 3))
    b7 = c(f"{p}.branch7x7_3", b7, 192, (7, 1), padding=(3, 0))
    bd = c(f"{p}.branch7x7dbl_1", x, c7)
    bd = c(f"{p}.branch7x7dbl_2", bd, c7, (7, 1), padding=(3, 0))
    bd = c(f"{p}.branch7x7dbl_3", bd, c7, (1, 7), padding=(0, 3))
    bd = c(f"{p}.branch7x7dbl_4", bd, c7, (7, 1), padding=(3, 0))
    bd = c(f"{p}.branch7x7dbl_5", bd, 192, (1, 7), padding=(0, 3))
    bp = c(f"{p}.branch_pool", self.avg_pool(x), 192)
    return self.torch.cat([b1, b7, bd, bp], 1)

  def block_d(self, p, x):
    c = self.conv
    b3 = c(f"{p}.branch3x3_2", c(f"{p}.branch3x3_1", x, 192), 320, 3, stride=2)
    b7 = c(f"{p}.branch7x7x3_1", x, 192)
    b7 = c(f"{p}.branch7x7x3_2", b7, 192, (1, 7), padding=(0, 3))
    b7 = c(f"{p}.branch7x7x3_3", b7, 192, (7, 1), padding=(3, 0))
    b7 = c(f"{p}.branch7x7x3_4", b7, 192, 3, stride=2)
    return self.torch.cat([b3, b7, self.f.max_pool2d(x, 3, stride=2)], 1)

  def block_e(self, p, x, max_pool):
    c, cat = self.conv, self.torch.cat
    b1 = c(f"{p}.branch1x1", x, 320)
    b3 = c(f"{p}.branch3x3_1", x, 384)
    b3 = cat([c(f"{p}.branch3x3_2a", b3, 384, (1, 3), padding=(0, 1)),
              c(f"{p}.branch3x3_2b", b3, 384, (3, 1), padding=(1, 0))], 1)
    bd = c(f"{p}.branch3x3dbl_2", c(f"{p}.branch3x3dbl_1", x, 448), 384, 3, padding=1)
    bd = cat([c(f"{p}.branch3x3dbl_3a", bd, 384, (1, 3), padding=(0, 1)),
              c(f"{p}.branch3x3dbl_3b", bd, 384, (3, 1), padding=(1, 0))], 1)
    pooled = (self.f.max_pool2d(x, 3, stride=1, padding=1) if max_pool else self.avg_pool(x))
    return cat([b1, b3, bd, c(f"{p}.branch_pool", pooled, 192)], 1)

  def __call__(self, images01):
    """pytorch-fid's InceptionV3 on images (N, 3, H, W) in [0, 1]: resize, 2x − 1, pool3."""
    x = self.f.interpolate(images01, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    x = self.conv("Conv2d_1a_3x3", x, 32, 3, stride=2)
    x = self.conv("Conv2d_2a_3x3", x, 32, 3)
    x = self.f.max_pool2d(self.conv("Conv2d_2b_3x3", x, 64, 3, padding=1), 3, stride=2)
    x = self.conv("Conv2d_3b_1x1", x, 80)
    x = self.f.max_pool2d(self.conv("Conv2d_4a_3x3", x, 192, 3), 3, stride=2)
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = self.block_a(name, x, pool_features)
    x = self.block_b("Mixed_6a", x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = self.block_c(name, x, c7)
    x = self.block_d("Mixed_7a", x)
    x = self.block_e("Mixed_7b", x, max_pool=False)
    x = self.block_e("Mixed_7c", x, max_pool=True)
    return self.f.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def test_imported_weights_match_an_independent_torch_forward(tmp_path):
  torch = _torch()
  images = _images(2, channels=3, seed=3)  # RGB: a permuted input axis of a kernel would show
  reference = _TorchFID(torch, seed=5)
  with torch.no_grad():
    expected = reference(torch.from_numpy((images + 1) / 2).permute(0, 3, 1, 2)).numpy()
  assert len(reference.sd) == 94 * 6
  path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  torch.save({**reference.sd, "fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)},
             str(path))
  network = inception.load_inception(str(path))
  assert network.meta["id"] == "fid_inception_v3" and network.meta["resolution"] == 299
  ours = network.predict(images, parallel.make_mesh(), batch_size=2)["features"]
  assert ours.shape == (2, 2048) and np.abs(expected).max() > 0.1
  np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_weights_file_that_is_not_the_fid_state_dict_is_refused(tmp_path):
  torch = _torch()
  not_a_dict = tmp_path / "list.pth"
  torch.save([torch.zeros(2)], str(not_a_dict))
  with pytest.raises(UserInputError, match="does not hold a state dict"):
    inception.load_inception(str(not_a_dict))
  sd = {k: torch.zeros(s) for k, s in fid_inception.expected_keys().items()}
  del sd["Conv2d_1a_3x3.bn.weight"]
  partial = tmp_path / "partial.pth"
  torch.save(sd, str(partial))
  with pytest.raises(UserInputError, match="missing keys Conv2d_1a_3x3.bn.weight"):
    inception.load_inception(str(partial))
