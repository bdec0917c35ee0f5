// The linear ops of kernels.cpp, for decode.cpp's fused decode step to call without going back
// through Python. Shapes and formats: kernels.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace ondol {

at::Tensor bf16_linear_op(const at::Tensor& x, const at::Tensor& w);
at::Tensor int8_linear_op(const at::Tensor& x, const at::Tensor& q, const at::Tensor& s, int64_t group);
at::Tensor int4_linear_op(const at::Tensor& x, const at::Tensor& q, const at::Tensor& s,
                          const std::optional<at::Tensor>& z, int64_t group);
void dequantize_op(const at::Tensor& q, const at::Tensor& s, const std::optional<at::Tensor>& z, int64_t bits,
                   int64_t group, at::Tensor& out);

}  // namespace ondol
