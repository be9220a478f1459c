"""OSNet x1.0 in torchreid's layout (trainer/models/osnet.py) and DeSKPro's LMBN head and CSA
(trainer/models/lmbn.py)."""
import pytest
import torch
import torch.nn.functional as F

from pipeline.errors import InputError, MissingInputError
from trainer.models import build_backbone
from trainer.models.lmbn import LMBN, BatchDropTop, SpatialAttention, state_from_deskpro
from trainer.models.osnet import OSNET_X1_0_URL, OSNet, build_osnet_x1_0, load_osnet_weights

# ---------------------------------------------------------------------------------------------------------------
# The expected state dict of torchreid's osnet_x1_0 (KaiyangZhou/deep-person-reid: torchreid/models/osnet.py),
# written from that file's module definitions, not from ccreid's implementation:
#   ConvLayer / Conv1x1: conv (bias=False) + bn                   -> conv.weight, bn.*
#   Conv1x1Linear: conv (bias=False) + bn                         -> conv.weight, bn.*
#   LightConv3x3: conv1 1×1 (bias=False), conv2 3×3 depth-wise (groups=out, bias=False), bn
#   ChannelGate(C): fc1 Conv2d(C, C//16, 1, bias=True), fc2 Conv2d(C//16, C, 1, bias=True) (norm1 None)
#   OSBlock(in, out): mid = out // 4; conv1 Conv1x1(in, mid); conv2a LightConv3x3; conv2b/c/d Sequentials of
#     2/3/4 LightConv3x3; gate ChannelGate(mid); conv3 Conv1x1Linear(mid, out); downsample Conv1x1Linear(in, out)
#     only when in != out (IN None for osnet_x1_0)
#   OSNet: conv1 ConvLayer(3, 64, 7); conv2/conv3 = [OSBlock(in, out), OSBlock(out, out), Sequential(Conv1x1(out,
#     out), AvgPool2d)]; conv4 = [OSBlock(384, 512), OSBlock(512, 512)] (no transition); conv5 Conv1x1(512, 512);
#     fc = Sequential(Linear(512, 512), BatchNorm1d(512), ReLU); classifier Linear(512, num_classes)
# How this was checked: the dict below was compared key by key and shape by shape (and in order) with the
# state_dict() of the official torchreid/models/osnet.py module itself (osnet_x1_0(pretrained=False), run from
# the repository file outside ccreid); both have 567 entries and 2,169,508 parameters without the classifier.
# ---------------------------------------------------------------------------------------------------------------
SCALAR = ()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: OSNet's many small (depth-wise) convolutions ran ~50× slower here with torch's two
    threads while other processes used the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bn(prefix, c):
    """PyTorch BatchNorm's five state entries."""
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": SCALAR}


def light(prefix, c):
    return {f"{prefix}.conv1.weight": (c, c, 1, 1), f"{prefix}.conv2.weight": (c, 1, 3, 3), **bn(f"{prefix}.bn", c)}


def osblock(p, cin, cout):
    mid = cout // 4
    keys = {f"{p}.conv1.conv.weight": (mid, cin, 1, 1), **bn(f"{p}.conv1.bn", mid), **light(f"{p}.conv2a", mid)}
    for stream, depth in (("conv2b", 2), ("conv2c", 3), ("conv2d", 4)):
        for i in range(depth):
            keys.update(light(f"{p}.{stream}.{i}", mid))
    keys.update({f"{p}.gate.fc1.weight": (mid // 16, mid, 1, 1), f"{p}.gate.fc1.bias": (mid // 16,),
                 f"{p}.gate.fc2.weight": (mid, mid // 16, 1, 1), f"{p}.gate.fc2.bias": (mid,),
                 f"{p}.conv3.conv.weight": (cout, mid, 1, 1), **bn(f"{p}.conv3.bn", cout)})
    if cin != cout:
        keys.update({f"{p}.downsample.conv.weight": (cout, cin, 1, 1), **bn(f"{p}.downsample.bn", cout)})
    return keys


# conv2.0 = OSBlock(64, 256), written out in full (mid 64, gate 64 -> 4 -> 64)
CONV2_0 = {
    "conv2.0.conv1.conv.weight": (64, 64, 1, 1), **bn("conv2.0.conv1.bn", 64),
    "conv2.0.conv2a.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2a.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2a.bn", 64),
    "conv2.0.conv2b.0.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2b.0.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2b.0.bn", 64),
    "conv2.0.conv2b.1.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2b.1.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2b.1.bn", 64),
    "conv2.0.conv2c.0.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2c.0.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2c.0.bn", 64),
    "conv2.0.conv2c.1.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2c.1.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2c.1.bn", 64),
    "conv2.0.conv2c.2.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2c.2.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2c.2.bn", 64),
    "conv2.0.conv2d.0.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2d.0.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2d.0.bn", 64),
    "conv2.0.conv2d.1.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2d.1.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2d.1.bn", 64),
    "conv2.0.conv2d.2.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2d.2.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2d.2.bn", 64),
    "conv2.0.conv2d.3.conv1.weight": (64, 64, 1, 1), "conv2.0.conv2d.3.conv2.weight": (64, 1, 3, 3),
    **bn("conv2.0.conv2d.3.bn", 64),
    "conv2.0.gate.fc1.weight": (4, 64, 1, 1), "conv2.0.gate.fc1.bias": (4,),
    "conv2.0.gate.fc2.weight": (64, 4, 1, 1), "conv2.0.gate.fc2.bias": (64,),
    "conv2.0.conv3.conv.weight": (256, 64, 1, 1), **bn("conv2.0.conv3.bn", 256),
    "conv2.0.downsample.conv.weight": (256, 64, 1, 1), **bn("conv2.0.downsample.bn", 256),
}


def expected_osnet(num_classes=1000):
    keys = {"conv1.conv.weight": (64, 3, 7, 7), **bn("conv1.bn", 64)}
    keys.update(CONV2_0)
    keys.update(osblock("conv2.1", 256, 256))
    keys.update({"conv2.2.0.conv.weight": (256, 256, 1, 1), **bn("conv2.2.0.bn", 256)})  # transition
    keys.update(osblock("conv3.0", 256, 384))
    keys.update(osblock("conv3.1", 384, 384))
    keys.update({"conv3.2.0.conv.weight": (384, 384, 1, 1), **bn("conv3.2.0.bn", 384)})  # transition
    keys.update(osblock("conv4.0", 384, 512))
    keys.update(osblock("conv4.1", 512, 512))
    keys.update({"conv5.conv.weight": (512, 512, 1, 1), **bn("conv5.bn", 512)})
    keys.update({"fc.0.weight": (512, 512), "fc.0.bias": (512,), **bn("fc.1", 512)})
    keys.update({"classifier.weight": (num_classes, 512), "classifier.bias": (num_classes,)})
    return keys


def shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


def test_the_osblock_helper_agrees_with_the_written_out_block():
    assert osblock("conv2.0", 64, 256) == CONV2_0 and len(CONV2_0) == 92


def test_osnet_state_dict_is_torchreids_key_for_key():
    net = OSNet()
    assert shapes(net.state_dict()) == expected_osnet() and len(expected_osnet()) == 567
    assert list(net.state_dict()) == list(expected_osnet())  # registration order too
    # torchreid's model zoo lists osnet_x1_0 at 2.2M parameters (without the ImageNet classifier)
    params = {k: p.numel() for k, p in net.named_parameters()}
    assert sum(v for k, v in params.items() if not k.startswith("classifier.")) == 2_169_508
    assert sum(params.values()) == 2_169_508 + 512 * 1000 + 1000
    assert shapes(OSNet(num_classes=7).state_dict()) == expected_osnet(7)


def test_osnet_resolutions_and_modes():
    net = OSNet().eval()
    # the parameter-free layers, which the state dict cannot show: torchreid's MaxPool2d(3, 2, 1) stem pool,
    # AvgPool2d(2, 2) in the conv2 / conv3 transitions, none after conv4, global average pooling
    pool = net.maxpool
    assert type(pool) is torch.nn.MaxPool2d and (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    for stage in (net.conv2, net.conv3):
        avg = stage[2][1]
        assert type(avg) is torch.nn.AvgPool2d and (avg.kernel_size, avg.stride) == (2, 2)
    assert len(net.conv4) == 2 and type(net.global_avgpool) is torch.nn.AdaptiveAvgPool2d
    assert net.conv1.conv.stride == (2, 2) and net.conv1.conv.padding == (3, 3)
    assert net.featuremaps(torch.randn(1, 3, 384, 128)).shape == (1, 512, 24, 8)  # output stride 16
    assert net(torch.randn(2, 3, 256, 128)).shape == (2, 512)  # eval: the fc feature
    assert net.train()(torch.randn(2, 3, 256, 128)).shape == (2, 1000)  # training: logits


def random_official_file(path, num_classes=1000, prefix="", drop=(), rename=None, reshape=None):
    """A checkpoint with the official key names and shapes, filled with random tensors."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, shape in expected_osnet(num_classes).items():
        if k in drop:
            continue
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * 0.05
    if reshape:
        state[reshape] = torch.zeros(3)
    if rename:
        state[rename[1]] = state.pop(rename[0])
    torch.save({prefix + k: v for k, v in state.items()}, path)
    return {k: v for k, v in state.items()}


def test_an_official_layout_checkpoint_loads_strictly_and_runs(tmp_path):
    state = random_official_file(tmp_path / "osnet_x1_0_imagenet.pth", prefix="module.")  # DataParallel's prefix
    net = build_osnet_x1_0(str(tmp_path / "osnet_x1_0_imagenet.pth"))
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    out = net.eval()(torch.randn(2, 3, 128, 64))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    # a model for other classes drops only the ImageNet classifier (torchreid drops by shape mismatch)
    other = OSNet(num_classes=10)
    before = other.classifier.weight.clone()
    assert load_osnet_weights(other, tmp_path / "osnet_x1_0_imagenet.pth") == ["classifier.bias", "classifier.weight"]
    assert torch.equal(other.classifier.weight, before)
    assert torch.equal(other.conv5.conv.weight, state["conv5.conv.weight"])
    # files saved before PyTorch 0.4.1 have no num_batches_tracked
    random_official_file(tmp_path / "old.pth", drop=[k for k in expected_osnet() if k.endswith("num_batches_tracked")])
    load_osnet_weights(OSNet(), tmp_path / "old.pth")


def test_a_wrong_checkpoint_is_refused_naming_the_key(tmp_path):
    random_official_file(tmp_path / "a.pth", rename=("conv3.1.gate.fc1.weight", "conv3.1.gate.fc.weight"))
    with pytest.raises(InputError, match=r"a\.pth: not an OSNet x1\.0 state dict.*missing \['conv3\.1\.gate\.fc1\."
                                         r"weight'\], unexpected \['conv3\.1\.gate\.fc\.weight'\]"):
        build_osnet_x1_0(str(tmp_path / "a.pth"))
    random_official_file(tmp_path / "b.pth", reshape="conv5.bn.bias")
    with pytest.raises(InputError, match=r"wrong shapes \['conv5\.bn\.bias \(3,\) \(model \(512,\)\)'\]"):
        build_osnet_x1_0(str(tmp_path / "b.pth"))
    random_official_file(tmp_path / "c.pth", drop=["classifier.bias", "classifier.weight"])  # dropped, not differing
    with pytest.raises(InputError, match=r"missing \['classifier\.bias', 'classifier\.weight'\]"):
        build_osnet_x1_0(str(tmp_path / "c.pth"))
    (tmp_path / "d.pth").write_bytes(b"<html>Google Drive - Virus scan warning</html>")
    with pytest.raises(InputError, match=r"d\.pth: OSNet x1\.0 ImageNet weights cannot be read"):
        build_osnet_x1_0(str(tmp_path / "d.pth"))


def test_a_missing_file_names_the_file_and_the_url(tmp_path, monkeypatch):
    with pytest.raises(MissingInputError, match=rf"nope\.pth: OSNet x1\.0 ImageNet weights not found.*"
                                                rf"{OSNET_X1_0_URL.replace('?', '[?]')}"):
        build_osnet_x1_0(str(tmp_path / "nope.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(MissingInputError, match=r"th/checkpoints/osnet_x1_0_imagenet\.pth: .*drive\.google\.com"):
        build_osnet_x1_0("imagenet")


def test_osnet_is_a_registered_backbone(tmp_path):
    trunk, channels = build_backbone("osnet_x1_0", "none", 1)
    assert channels == 512 and trunk(torch.randn(1, 3, 256, 128)).shape == (1, 512, 16, 8)
    # torchreid's names, without the head
    assert shapes(trunk.state_dict()) == {k: v for k, v in expected_osnet().items()
                                          if not k.startswith(("fc.", "classifier."))}
    state = random_official_file(tmp_path / "w.pth")
    trunk, _ = build_backbone("osnet_x1_0", str(tmp_path / "w.pth"), 2)  # last stride: no effect on OSNet
    assert torch.equal(trunk.conv4[1].conv3.conv.weight, state["conv4.1.conv3.conv.weight"])
    assert trunk(torch.randn(1, 3, 256, 128)).shape == (1, 512, 16, 8)
    with pytest.raises(InputError, match="last_stride must be 1 or 2, got 3"):
        build_backbone("osnet_x1_0", "none", 3)


def test_deskpro_osblock_sums_conv2a_twice_and_leaves_conv2b_unused():
    torch.manual_seed(0)
    ours, theirs = OSNet().train(), OSNet(osblock_forward="deskpro").train()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 128, 64)
    assert not torch.allclose(ours.featuremaps(x), theirs.featuremaps(x))
    theirs.featuremaps(x).sum().backward()
    assert theirs.conv2[0].conv2b[0].conv1.weight.grad is None and theirs.conv2[0].conv2a.conv1.weight.grad is not None
    with pytest.raises(InputError, match="osblock_forward must be one of torchreid, deskpro"):
        OSNet(osblock_forward="fast")


# ------------------------------------------------------------------ LMBN
NUM_CLASSES = 5


@pytest.fixture(scope="module")
def lmbn():
    torch.manual_seed(0)
    return LMBN(NUM_CLASSES)


def neck_io(model):
    """Forward hooks recording each neck's input and output, in the official embedding order."""
    necks = [model.global_branch.reduction_1, model.global_branch.reduction_2, model.part_branch.reduction_1,
             model.part_branch.reduction_2, model.part_branch.reduction_3, model.channel_branch.reduction_ch_0,
             model.channel_branch.reduction_ch_1]
    seen = {}
    handles = [n.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, (i[0], o)))
               for k, n in enumerate(necks)]
    return seen, handles


@pytest.mark.parametrize("size, stem_hw, branch_hw", [((384, 128), (48, 16), (24, 8)), ((128, 64), (16, 8), (8, 4))])
def test_lmbn_shapes_in_training_and_eval(lmbn, size, stem_hw, branch_hw):
    x = torch.randn(4, 3, *size)
    lmbn.eval()
    with torch.no_grad():
        stem = lmbn.stem(x)
        assert stem.shape == (4, 384, *stem_hw)
        assert lmbn.global_branch.backbone2(stem).shape == (4, 512, *branch_hw)
        out = lmbn.branches(stem)
        assert out.shape == (4, 512, 7) and torch.equal(out, lmbn(x))
    lmbn.train()
    logits, feats = lmbn(x)
    assert len(logits) == 7 and all(t.shape == (4, NUM_CLASSES) for t in logits)
    assert len(feats) == 3 and all(t.shape == (4, 512) for t in feats)


def test_lmbn_outputs_are_the_official_embeddings_in_order(lmbn):
    x = torch.randn(4, 3, 128, 64)
    seen, handles = neck_io(lmbn)
    drop = {}
    handles.append(lmbn.global_branch.batch_drop_block.register_forward_hook(lambda m, i, o: drop.update(out=o)))
    part_map = {}
    handles.append(lmbn.part_branch.backbone2.register_forward_hook(lambda m, i, o: part_map.update(out=o)))
    ch_map = {}
    handles.append(lmbn.channel_branch.backbone2.register_forward_hook(lambda m, i, o: ch_map.update(out=o)))
    try:
        lmbn.train()
        logits, feats = lmbn(x)
        dropped, features = drop["out"]
        assert (dropped == 0).any() and not torch.equal(dropped, features)  # training drops rows
        # the inputs of the seven necks: global GAP (un-dropped) / GMP (dropped), part GMP / upper / lower,
        # channel halves through the shared conv
        fmap, cmap = part_map["out"], ch_map["out"].mean((2, 3), keepdim=True)
        h = fmap.shape[2] // 2
        shared = lmbn.channel_branch.shared
        expected_inputs = [features.mean((2, 3), keepdim=True), F.adaptive_max_pool2d(dropped, 1),
                           F.adaptive_max_pool2d(fmap, 1), fmap[:, :, :h].mean((2, 3), keepdim=True),
                           fmap[:, :, h:].mean((2, 3), keepdim=True), shared(cmap[:, :256]), shared(cmap[:, 256:])]
        for k, want in enumerate(expected_inputs):
            assert torch.allclose(seen[k][0], want, atol=1e-5), k
        for k in range(7):
            assert torch.equal(logits[k], seen[k][1][1]), k
        # the triplet features: global-avg, global-drop, part-max, before the BN
        for k in range(3):
            assert torch.equal(feats[k], seen[k][1][2]), k
        lmbn.eval()
        with torch.no_grad():
            out = lmbn(x)
        for k in range(7):  # after-BN features
            assert torch.equal(out[:, :, k], seen[k][1][0]), k
        assert torch.equal(drop["out"][0], drop["out"][1])  # nothing dropped at test
    finally:
        for hd in handles:
            hd.remove()


def test_branches_own_independent_copies_and_the_channel_conv_is_shared(lmbn):
    branches = [lmbn.global_branch.backbone2, lmbn.part_branch.backbone2, lmbn.channel_branch.backbone2]
    ptrs = [{p.data_ptr() for p in b.parameters()} for b in branches]
    stem = {p.data_ptr() for p in lmbn.backbone.parameters()}
    assert all(not (a & b) for i, a in enumerate(ptrs) for b in ptrs[i + 1:]) and all(not (a & stem) for a in ptrs)
    assert len(ptrs[0]) == sum(1 for _ in branches[0].parameters())
    # fresh copies of one network: equal values, different tensors
    fresh = LMBN(NUM_CLASSES)
    assert torch.equal(fresh.global_branch.backbone2[1][0].conv1.conv.weight,
                       fresh.channel_branch.backbone2[1][0].conv1.conv.weight)
    # one 1×1 conv 256→512 serves both channel halves: either half's loss reaches it
    channel = lmbn.channel_branch.train()
    convs = [m for m in channel.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels == 256]
    assert len(convs) == 1 and convs[0].weight.shape == (512, 256, 1, 1) and convs[0].bias is None
    for half in (0, 1):
        channel.zero_grad()
        channel(torch.randn(4, 384, 8, 4))[half][1].sum().backward()
        assert convs[0].weight.grad is not None and convs[0].weight.grad.abs().sum() > 0
    # BNNeck / BNNeck3: the BN bias is frozen in all seven necks
    frozen = [k for k, p in lmbn.named_parameters() if not p.requires_grad]
    assert len(frozen) == 7 and all(k.endswith("bn.bias") for k in frozen)


def test_lmbn_loads_imagenet_osnet_into_stem_and_every_branch(tmp_path):
    state = random_official_file(tmp_path / "osnet_x1_0_imagenet.pth")
    model = LMBN(NUM_CLASSES, pretrained=str(tmp_path / "osnet_x1_0_imagenet.pth"))
    assert torch.equal(model.backbone[0].conv.weight, state["conv1.conv.weight"])
    assert torch.equal(model.backbone[3].conv1.conv.weight, state["conv3.0.conv1.conv.weight"])
    for branch in (model.global_branch, model.part_branch, model.channel_branch):
        assert torch.equal(branch.backbone2[0][0].conv3.conv.weight, state["conv3.1.conv3.conv.weight"])
        assert torch.equal(branch.backbone2[2].conv.weight, state["conv5.conv.weight"])


def test_deskpro_state_dicts_map_onto_lmbn(lmbn):
    # DeSKPro's DeskPro.face_net keys: its LMBN also lists the three branches in a ModuleList `branches`
    ours = lmbn.state_dict()
    theirs = {f"face_net.{k}": v for k, v in ours.items()}
    theirs.update({f"face_net.branches.0.{k[len('global_branch.'):]}": v for k, v in ours.items()
                   if k.startswith("global_branch.")})
    theirs["nocloth_net.backbone.0.conv.weight"] = torch.zeros(1)
    mapped = state_from_deskpro(theirs, "face_net.")
    assert list(mapped) == list(ours)
    LMBN(NUM_CLASSES).load_state_dict(mapped)


# ------------------------------------------------------------------ BatchDropTop, SpatialAttention
def test_batch_drop_top_zeroes_the_rows_with_the_highest_peak_activation():
    # 2 samples, 3 channels, 6 rows, 2 columns: round(0.33 · 6) = 2 rows dropped per sample. The row activation
    # is the max over columns of the channel-summed square, so a single spike outranks a row that is stronger on
    # average (sample 0: row 1 has the spike 4 -> 16, row 2 3.5 in both columns -> 12.25)
    x = torch.full((2, 3, 6, 2), 0.1)
    x[0, 0, 1, 0] = -4.0
    x[0, 0, 2] = 3.5
    x[0, :, 4, 1] = 3.0  # 27
    x[1, 2, 0, 1] = 5.0
    x[1, :, 5] = 2.0  # 12 in both columns
    x[1, 0, 3] = 1.0
    drop = BatchDropTop(0.33).train()
    out = drop(x)
    dropped = {(b, r) for b in range(2) for r in range(6) if (out[b, :, r] == 0).all()}
    assert dropped == {(0, 1), (0, 4), (1, 0), (1, 5)}
    keep = torch.ones(2, 1, 6, 1)
    for b, r in dropped:
        keep[b, 0, r] = 0
    assert torch.equal(out, x * keep)
    # 24 rows (a 384×128 input): 8 rows go
    y = torch.rand(3, 4, 24, 8)
    y[:, :, 16:] += 10
    assert ((BatchDropTop(0.33).train()(y) == 0).all(1).all(2).sum(1) == 8).all()
    assert ((BatchDropTop(0.33).train()(y)[:, :, 16:]) == 0).all()
    drop.eval()
    assert drop(x) is x


def test_spatial_attention_is_a_map_in_0_1_that_trains():
    torch.manual_seed(0)
    attn = SpatialAttention(384)
    assert abs(attn.conv1.weight.std().item() - (2 / 384) ** 0.5) < 0.005  # Kaiming normal, fan_in
    assert attn.conv1.bias is None and attn.conv2.bias is None and attn.conv2.weight.shape == (1, 384, 1, 1)
    x = torch.randn(2, 384, 48, 16)
    a = attn(x)
    assert a.shape == (2, 1, 48, 16) and (a > 0).all() and (a < 1).all()
    F.mse_loss(a, torch.full_like(a, 0.1)).backward()
    assert attn.conv1.weight.grad.abs().sum() > 0 and attn.conv2.weight.grad.abs().sum() > 0
