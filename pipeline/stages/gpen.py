"""GPEN blind face restoration (yangxy/GPEN face_model/gpen_model.py; docs/preprocessing.md#restored-faces):
the GAN-prior network of the official release (`FullGenerator`: a StyleGAN2 generator whose noise inputs
are an encoder's features), written here in plain PyTorch so it runs on CPU as well as GPU — the official
code needs compiled CUDA ops (`fused_bias_act`, `upfirdn2d`) and falls back to slow reference code elsewhere.

Module and parameter names (including the persistent blur-kernel buffers) reproduce the official state
dict, so GPEN-BFR-512 (channel multiplier 2, narrow 1) and GPEN-BFR-256 (1, 0.5) load strictly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BLUR = (1, 3, 3, 1)
CONFIGS = {512: {"channel_multiplier": 2, "narrow": 1.0}, 256: {"channel_multiplier": 1, "narrow": 0.5}}


def blur_kernel(gain: float = 1.0) -> torch.Tensor:
    k = torch.tensor(BLUR, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample by zero insertion, pad (negative = crop), filter with the kernel, keep every `down`-th pixel.
    Written here (not torchvision/kornia) because StyleGAN2's exact padding and kernel flip define the
    pretrained weights' behaviour."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    k = torch.flip(kernel, (0, 1)).to(x)[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, gain: float = math.sqrt(2)):
    return gain * F.leaky_relu(x + bias.view(1, -1, *([1] * (x.dim() - 2))), slope)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain))  # persistent: the checkpoints hold it
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(4.0))
        p = len(BLUR) - 2
        self.pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=2, pad=self.pad)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with the weight scaled at run time (equalised learning rate)."""

    def __init__(self, din: int, dout: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dout, din) / lr_mul)
        self.bias = nn.Parameter(torch.full((dout,), float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(din), lr_mul, activation

    def forward(self, x):
        out = F.linear(x, self.weight * self.scale)
        bias = self.bias * self.lr_mul
        return fused_leaky_relu(out, bias) if self.activation else out + bias


class EqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(cin * kernel ** 2), stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + FusedLeakyReLU: the encoder's layers."""

    def __init__(self, cin: int, cout: int, kernel: int, downsample: bool = False):
        layers: list[nn.Module] = []
        if downsample:
            p = len(BLUR) - 2 + kernel - 1
            layers.append(Blur(((p + 1) // 2, p // 2)))
        layers += [EqualConv2d(cin, cout, kernel, stride=2 if downsample else 1,
                               padding=0 if downsample else kernel // 2, bias=False), FusedLeakyReLU(cout)]
        super().__init__(*layers)


class ModulatedConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1)
        self.scale, self.padding = 1 / math.sqrt(cin * kernel ** 2), kernel // 2
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            p = len(BLUR) - 2 - (kernel - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def forward(self, x, style):
        b, cin, h, w = x.shape
        weight = self.scale * self.weight * self.modulation(style).view(b, 1, cin, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4)) + 1e-8).view(b, -1, 1, 1, 1)
        cout, k = weight.shape[1], weight.shape[-1]
        x = x.reshape(1, b * cin, h, w)
        if self.upsample:
            # one transposed convolution per sample (groups), then the blur that completes the upsampling
            weight = weight.transpose(1, 2).reshape(b * cin, cout, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.reshape(b, cout, *out.shape[2:]))
        out = F.conv2d(x, weight.reshape(b * cout, cin, k, k), padding=self.padding, groups=b)
        return out.reshape(b, cout, *out.shape[2:])


class NoiseInjection(nn.Module):
    """GPEN concatenates the (scaled) encoder features to the generator's instead of adding noise."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return torch.cat([x, self.weight * noise], 1)


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout * 2)

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, cin: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


def channel_table(channel_multiplier: int, narrow: float) -> dict[int, int]:
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {r: int(c * narrow) for r, c in base.items()}


class ConstantInput(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))


class Generator(nn.Module):
    def __init__(self, size: int, style_dim: int, n_mlp: int, channels: dict[int, int], lr_mlp: float = 0.01):
        super().__init__()
        self.style = nn.Sequential(PixelNorm(), *(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                                                  for _ in range(n_mlp)))
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = ToRGB(channels[4] * 2, style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.convs, self.upsamples, self.to_rgbs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cin = channels[4]
        for i in range(3, self.log_size + 1):
            cout = channels[2 ** i]
            self.convs.append(StyledConv(cin * 2, cout, style_dim, upsample=True))
            self.convs.append(StyledConv(cout * 2, cout, style_dim))
            self.to_rgbs.append(ToRGB(cout * 2, style_dim))
            cin = cout

    def forward(self, code, noise: list[torch.Tensor]):
        w = self.style(code)  # one style for every layer: GPEN restores without style mixing
        out = self.input.input.repeat(code.shape[0], 1, 1, 1)
        out = self.conv1(out, w, noise[0])
        skip = self.to_rgb1(out, w)
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, w, noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, w, noise[2 * k + 2])
            skip = to_rgb(out, w, skip)
        return skip


class FullGenerator(nn.Module):
    """Encoder (ecd0..ecdN, final_linear) + generator: a degraded face in [-1, 1] -> the restored face."""

    def __init__(self, size: int = 512, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 narrow: float = 1.0):
        super().__init__()
        channels = channel_table(channel_multiplier, narrow)
        self.log_size = int(math.log2(size))
        self.generator = Generator(size, style_dim, n_mlp, channels)
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        cin = channels[size]
        for i in range(self.log_size, 2, -1):
            cout = channels[2 ** (i - 1)]
            setattr(self, f"ecd{self.log_size - i + 1}", nn.Sequential(ConvLayer(cin, cout, 3, downsample=True)))
            cin = cout
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, style_dim, activation=True))

    def forward(self, x):
        features = []
        for i in range(self.log_size - 1):
            x = getattr(self, f"ecd{i}")(x)
            features.append(x)
        code = self.final_linear(x.flatten(1))
        # each resolution's encoder features feed both styled convs of that resolution, coarsest first
        noise = [f for f in reversed(features) for _ in range(2)][1:]
        return self.generator(code, noise)
