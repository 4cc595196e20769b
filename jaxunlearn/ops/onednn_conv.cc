// XLA FFI handlers that run a 2-D convolution and both of its gradients with oneDNN.
//
// One convolution C(src; w) is described by
//   src  (N, H, W, IC)        NHWC
//   w    (KH, KW, IC, OC)     HWIO (JAX's "HWIO" dimension numbers)
//   dst  (N, OH, OW, OC)      NHWC
// a stride (SH, SW) and a padding ((PT, PB), (PL, PR)). Three handlers compute
//   jaxunlearn_onednn_conv_fwd:          dst    = C(src; w)
//   jaxunlearn_onednn_conv_bwd_data:     d_src  = Cᵀ(d_dst; w)          (result shape gives H, W)
//   jaxunlearn_onednn_conv_bwd_weights:  d_w    = ∂_w <d_dst, C(src; w)> (result shape gives KH, KW)
// Activations stay in the caller's NHWC buffers; weights are reordered to and from the blocked
// format oneDNN's kernel picks. Primitives are built once per shape and cached (building one
// JIT-compiles its kernel). Calls are serialized by a mutex: each call already uses all of
// oneDNN's OpenMP threads.

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using F32 = memory::data_type;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

std::mutex& Lock() {
  static std::mutex mutex;
  return mutex;
}

// The geometry of one convolution; the cache key of its primitives.
struct Geometry {
  int64_t n, h, w, ic, oc, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr;
  auto Tie() const { return std::tie(n, h, w, ic, oc, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr); }
  bool operator<(const Geometry& o) const { return Tie() < o.Tie(); }

  memory::desc Src(Tag tag = Tag::nhwc) const { return {{n, ic, h, w}, F32::f32, tag}; }
  memory::desc Dst(Tag tag = Tag::nhwc) const { return {{n, oc, oh, ow}, F32::f32, tag}; }
  memory::desc Weights(Tag tag = Tag::any) const { return {{oc, ic, kh, kw}, F32::f32, tag}; }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims PadLo() const { return {pt, pl}; }
  memory::dims PadHi() const { return {pb, pr}; }

  dnnl::convolution_forward::primitive_desc ForwardDesc() const {
    return {Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
            Src(), Weights(), Dst(), Strides(), PadLo(), PadHi()};
  }
};

// Cached primitives for one geometry: the convolution and the weight reorder it needs.
struct Entry {
  dnnl::primitive conv;
  memory::desc weights_md;  // the weights format the primitive wants
  dnnl::reorder weights_reorder;  // HWIO <-> weights_md; empty when they are the same
};

enum class Kind { kForward, kBackwardData, kBackwardWeights };

Entry Build(Kind kind, const Geometry& g) {
  auto fwd = g.ForwardDesc();
  Entry e;
  memory::desc user_w = g.Weights(Tag::hwio);
  if (kind == Kind::kForward) {
    e.conv = dnnl::convolution_forward(fwd);
    e.weights_md = fwd.weights_desc();
  } else if (kind == Kind::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.Weights(), g.Dst(), g.Strides(),
        g.PadLo(), g.PadHi(), fwd);
    e.conv = dnnl::convolution_backward_data(pd);
    e.weights_md = pd.weights_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.Weights(), g.Dst(), g.Strides(),
        g.PadLo(), g.PadHi(), fwd);
    e.conv = dnnl::convolution_backward_weights(pd);
    e.weights_md = pd.diff_weights_desc();
  }
  if (e.weights_md != user_w) {
    bool to_user = kind == Kind::kBackwardWeights;
    e.weights_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
        Engine(), to_user ? e.weights_md : user_w, Engine(), to_user ? user_w : e.weights_md));
  }
  return e;
}

const Entry& Cached(Kind kind, const Geometry& g) {
  static std::map<std::pair<int, Geometry>, Entry> cache;
  auto key = std::make_pair(static_cast<int>(kind), g);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, Build(kind, g)).first;
  return it->second;
}

Geometry MakeGeometry(ffi::Span<const int64_t> src, ffi::Span<const int64_t> w,
                      ffi::Span<const int64_t> dst, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                      int64_t pl, int64_t pr) {
  return {src[0], src[1], src[2], src[3], w[3], w[0], w[1], dst[1], dst[2], sh, sw, pt, pb, pl, pr};
}

ffi::Error Run(Kind kind, const Geometry& g, float* src, float* w, float* dst) {
  try {
    std::lock_guard<std::mutex> guard(Lock());
    const Entry& e = Cached(kind, g);
    dnnl::stream stream(Engine());
    memory src_m(g.Src(), Engine(), src), dst_m(g.Dst(), Engine(), dst);
    memory user_w(g.Weights(Tag::hwio), Engine(), w);
    memory conv_w = user_w;
    if (e.weights_reorder) conv_w = memory(e.weights_md, Engine());
    if (e.weights_reorder && kind != Kind::kBackwardWeights) {
      e.weights_reorder.execute(stream, user_w, conv_w);
    }
    if (kind == Kind::kForward) {
      e.conv.execute(stream, {{DNNL_ARG_SRC, src_m}, {DNNL_ARG_WEIGHTS, conv_w},
                              {DNNL_ARG_DST, dst_m}});
    } else if (kind == Kind::kBackwardData) {
      e.conv.execute(stream, {{DNNL_ARG_DIFF_SRC, src_m}, {DNNL_ARG_WEIGHTS, conv_w},
                              {DNNL_ARG_DIFF_DST, dst_m}});
    } else {
      e.conv.execute(stream, {{DNNL_ARG_SRC, src_m}, {DNNL_ARG_DIFF_WEIGHTS, conv_w},
                              {DNNL_ARG_DIFF_DST, dst_m}});
      if (e.weights_reorder) e.weights_reorder.execute(stream, conv_w, user_w);
    }
    stream.wait();
  } catch (const dnnl::error& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN convolution: ") + err.what());
  }
  return ffi::Error::Success();
}

using Buf = ffi::Buffer<ffi::F32, 4>;
using Out = ffi::ResultBuffer<ffi::F32, 4>;

ffi::Error Forward(Buf src, Buf w, Out dst, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                   int64_t pl, int64_t pr) {
  auto g = MakeGeometry(src.dimensions(), w.dimensions(), dst->dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(Kind::kForward, g, src.typed_data(), w.typed_data(), dst->typed_data());
}

ffi::Error BackwardData(Buf d_dst, Buf w, Out d_src, int64_t sh, int64_t sw, int64_t pt,
                        int64_t pb, int64_t pl, int64_t pr) {
  auto g = MakeGeometry(d_src->dimensions(), w.dimensions(), d_dst.dimensions(), sh, sw, pt, pb,
                        pl, pr);
  return Run(Kind::kBackwardData, g, d_src->typed_data(), w.typed_data(), d_dst.typed_data());
}

ffi::Error BackwardWeights(Buf src, Buf d_dst, Out d_w, int64_t sh, int64_t sw, int64_t pt,
                           int64_t pb, int64_t pl, int64_t pr) {
  auto g = MakeGeometry(src.dimensions(), d_w->dimensions(), d_dst.dimensions(), sh, sw, pt, pb,
                        pl, pr);
  return Run(Kind::kBackwardWeights, g, src.typed_data(), d_w->typed_data(), d_dst.typed_data());
}

// Two 4-D f32 operands, one 4-D f32 result and the stride and padding as attributes.
auto Binding() {
  return ffi::Ffi::Bind()
      .Arg<Buf>()
      .Arg<Buf>()
      .Ret<Buf>()
      .Attr<int64_t>("stride_h")
      .Attr<int64_t>("stride_w")
      .Attr<int64_t>("pad_top")
      .Attr<int64_t>("pad_bottom")
      .Attr<int64_t>("pad_left")
      .Attr<int64_t>("pad_right");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxunlearnOnednnConvForward, Forward,
                              Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxunlearnOnednnConvBackwardData, BackwardData,
                              Binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxunlearnOnednnConvBackwardWeights, BackwardWeights,
                              Binding());
