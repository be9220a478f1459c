"""ccreid-weights (trainer/fetch_weights.py) against an HTTP server on 127.0.0.1 serving files made here, and
trainer.pretrained: the ImageNet files each shipped method loads, as the loaders resolve them."""
from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline.errors import InputError, MissingInputError
from trainer.config import load_method_config, read_method_file
from trainer.fetch_weights import main, needed_files, read_checksums
from trainer.pretrained import backbone_weights, pretrained_files, torchreid_cache_file

from .conftest import REPO, free_port

WEIGHTS = os.urandom(200_000)  # bytes no server or page would send by chance
SHA = hashlib.sha256(WEIGHTS).hexdigest()


class Server:
    """Files by path: "whole" serves them, "short" promises the whole file (Content-Length) but closes half-way,
    "short-once" does that to the first request only, "page" serves an HTML page; any other path is a 404."""

    def __init__(self):
        self.requests: Counter[str] = Counter()
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                served.requests[self.path] += 1
                kind = self.path.strip("/").split(".")[0]
                body = b"<!DOCTYPE html><html>sign in</html>" if kind == "page" else WEIGHTS
                if kind not in ("whole", "short", "short-once", "page"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = kind == "short" or (kind == "short-once" and served.requests[self.path] == 1)
                self.wfile.write(body[: len(body) // 2] if cut else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(monkeypatch):
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A workflow directory with the shipped config/ (config.yaml, schema, methods), as the current directory;
    torch's caches inside it."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CCREID_PROGRESS_INTERVAL", "1e-9")  # a progress line for every chunk
    return tmp_path


def overlay(workdir: Path, data: dict, name: str = "overlay.yaml") -> str:
    (workdir / name).write_text(yaml.safe_dump(data))
    return name


def sam_from(url: str, **extra) -> dict:
    """An overlay that selects SAM for the silhouettes, its file at data/models/w.pth from `url`; no methods, so
    that no ImageNet file is needed."""
    spec = {"model_file": "data/models/w.pth", "url": url, **extra}
    return {"methods": [], "stages": {"silhouettes": {"backend": "sam"}},
            "backends": {"silhouettes": {"sam": spec}}}


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def models_dir(workdir: Path) -> list[str]:
    folder = workdir / "data/models"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- fetch -------------------------------------------------------------------------------------------------------


def test_fetch_downloads_records_the_sha256_and_leaves_nothing_else(workdir, server, capsys):
    leaked = workdir / "data/models/.w.pth.tmp-4194303"  # a killed fetch's staging folder (no such process)
    leaked.mkdir(parents=True)
    cfg = overlay(workdir, sam_from(f"{server.url}/whole.pth"))
    assert main(["fetch", "--configfile", cfg]) == 0
    out = capsys.readouterr().out
    assert (workdir / "data/models/w.pth").read_bytes() == WEIGHTS
    assert (workdir / "data/models/checksums.txt").read_text() == f"{SHA}  data/models/w.pth\n"
    assert read_checksums(workdir / "data/models/checksums.txt") == {"data/models/w.pth": SHA}
    assert models_dir(workdir) == ["checksums.txt", "w.pth"]  # no temporary file, the leaked one removed
    # progress where there is no terminal (a log): a start line, lines as bytes arrive, an end line
    assert f"fetching {server.url}/whole.pth -> data/models/w.pth" in out
    assert re.search(r"fetching data/models/w\.pth: [0-9.]+ MB/0\.2 MB", out)
    assert f"data/models/w.pth: fetched, 0.2 MB, sha256 {SHA} recorded in data/models/checksums.txt" in out
    if shutil.which("sha256sum"):  # the recorded line is sha256sum's format
        assert subprocess.run(["sha256sum", "-c", "data/models/checksums.txt"], cwd=workdir).returncode == 0
    # a second fetch checks the file against its recorded sha256 and downloads nothing
    assert main(["fetch", "--configfile", cfg]) == 0
    assert "data/models/w.pth: checksum ok" in capsys.readouterr().out
    assert server.requests["/whole.pth"] == 1


@pytest.mark.parametrize("recorded_in", ["config", "checksums.txt"])
def test_a_download_with_another_sha256_is_refused_and_not_kept(workdir, server, capsys, recorded_in):
    wrong = "0" * 64
    extra = {"sha256": wrong} if recorded_in == "config" else {}
    if recorded_in == "checksums.txt":
        (workdir / "data/models").mkdir(parents=True)
        (workdir / "data/models/checksums.txt").write_text(f"# mine\n{wrong}  data/models/w.pth\n")
    cfg = overlay(workdir, sam_from(f"{server.url}/whole.pth", **extra))
    assert main(["fetch", "--configfile", cfg]) == 2
    where = "the config's sha256" if recorded_in == "config" else "data/models/checksums.txt"
    assert error_line(capsys) == (f"error: {server.url}/whole.pth: refused, sha256 {SHA}, expected {wrong} "
                                  f"({where}); nothing written to data/models/w.pth")
    assert "w.pth" not in models_dir(workdir) and [n for n in models_dir(workdir) if n != "checksums.txt"] == []
    assert server.requests["/whole.pth"] == 1  # the same file again would not match either: no retry
    if recorded_in == "checksums.txt":  # the record is left as it was
        assert (workdir / "data/models/checksums.txt").read_text() == f"# mine\n{wrong}  data/models/w.pth\n"


def test_a_truncated_transfer_is_retried_then_refused_and_nothing_is_kept(workdir, server, capsys):
    cfg = overlay(workdir, sam_from(f"{server.url}/short.pth"))
    assert main(["fetch", "--retries", "1", "--configfile", cfg]) == 2
    assert error_line(capsys) == (f"error: {server.url}/short.pth: download failed after 2 tries (the connection "
                                  f"closed before the whole file arrived); nothing written to data/models/w.pth")
    assert server.requests["/short.pth"] == 2
    assert models_dir(workdir) == []


def test_a_transfer_broken_once_succeeds_on_the_retry(workdir, server, capsys):
    cfg = overlay(workdir, sam_from(f"{server.url}/short-once.pth"))
    assert main(["fetch", "--configfile", cfg]) == 0
    assert (workdir / "data/models/w.pth").read_bytes() == WEIGHTS
    assert server.requests["/short-once.pth"] == 2
    assert models_dir(workdir) == ["checksums.txt", "w.pth"]


def test_a_server_that_is_not_there_is_one_line_naming_the_url(workdir, capsys):
    url = f"http://127.0.0.1:{free_port()}/w.pth"  # nothing listens there
    cfg = overlay(workdir, sam_from(url))
    assert main(["fetch", "--retries", "0", "--configfile", cfg]) == 2
    line = error_line(capsys)
    assert line.startswith(f"error: {url}: download failed after 1 try (cannot connect: ")
    assert "refused" in line and line.endswith("; nothing written to data/models/w.pth")
    assert models_dir(workdir) == []


def test_a_404_is_one_line_naming_the_url_and_is_not_retried(workdir, server, capsys):
    cfg = overlay(workdir, sam_from(f"{server.url}/gone.pth", source="the SAM README"))
    assert main(["fetch", "--configfile", cfg]) == 2
    assert error_line(capsys) == (f"error: {server.url}/gone.pth: 404 Not Found; nothing written to "
                                  f"data/models/w.pth (get it from the SAM README)")
    assert server.requests["/gone.pth"] == 1 and models_dir(workdir) == []


def test_a_web_page_instead_of_the_file_is_refused(workdir, server, capsys):
    cfg = overlay(workdir, sam_from(f"{server.url}/page.pth"))
    assert main(["fetch", "--configfile", cfg]) == 2
    assert "the server sent a web page, not the file" in error_line(capsys)
    assert models_dir(workdir) == []


def test_a_file_without_a_direct_url_is_not_downloaded_and_named_with_its_source(workdir, server, capsys):
    spec = {"model_file": "data/models/fast.pth", "source": "https://drive.google.com/open?id=X (MODEL_ZOO)"}
    cfg = overlay(workdir, {"methods": [], "stages": {"keypoints": {"backend": "alphapose"}},
                            "backends": {"keypoints": {"alphapose": spec}}})
    assert main(["fetch", "--configfile", cfg]) == 1  # still missing afterwards
    assert ("data/models/fast.pth: missing, no direct download; get it by hand: https://drive.google.com/open?id=X "
            "(MODEL_ZOO)") in capsys.readouterr().out
    assert not server.requests and models_dir(workdir) == []


def test_fetch_takes_names_and_refuses_unknown_ones(workdir, server, capsys):
    data = sam_from(f"{server.url}/whole.pth")
    data["stages"]["faces"] = {"backend": "retinaface"}
    data["backends"]["faces"] = {"retinaface": {"model_file": "data/models/r.zip", "url": f"{server.url}/gone.zip"}}
    cfg = overlay(workdir, data)
    assert main(["fetch", "silhouettes/sam", "--configfile", cfg]) == 0  # the 404 of the other is not asked for
    assert models_dir(workdir) == ["checksums.txt", "w.pth"] and set(server.requests) == {"/whole.pth"}
    assert main(["fetch", "samm", "--configfile", cfg]) == 2
    assert error_line(capsys).startswith("error: samm: not among the weights files the configuration needs (known: ")


# --- list, verify, record ----------------------------------------------------------------------------------------


def test_list_and_verify_name_each_state(workdir, capsys):
    models = workdir / "data/models"
    models.mkdir(parents=True)
    for name in ("present.pth", "ok.pth", "differs.pth"):
        (models / name).write_bytes(WEIGHTS)
    (models / "checksums.txt").write_text(f"{'1' * 64}  data/models/differs.pth\n")
    backends = {"keypoints": {"alphapose": {"model_file": "data/models/present.pth", "source": "by hand"}},
                "silhouettes": {"sam": {"model_file": "data/models/missing.pth", "url": "https://x.org/m.pth"}},
                "faces": {"retinaface": {"model_file": "data/models/ok.pth", "sha256": SHA}},
                "faces_restored": {"gpen": {"model_file": "data/models/differs.pth", "source": "the GPEN README"}}}
    stages = {"keypoints": {"backend": "alphapose"}, "silhouettes": {"backend": "sam"},
              "faces": {"backend": "retinaface"}, "faces_restored": {"backend": "gpen"}}
    cfg = overlay(workdir, {"methods": [], "stages": stages, "backends": backends})
    assert main(["list", "--configfile", cfg]) == 0
    out = capsys.readouterr().out
    assert "present (no checksum recorded): data/models/present.pth" in out
    assert "missing: data/models/missing.pth" in out and "download: https://x.org/m.pth" in out
    assert "checksum ok: data/models/ok.pth" in out and f"sha256 {SHA} (the config's sha256)" in out
    assert "checksum differs: data/models/differs.pth" in out
    assert f"sha256 {SHA}, expected {'1' * 64} (data/models/checksums.txt)" in out
    assert "faces backend retinaface (stages)" in out
    assert out.rstrip().endswith("4 weights files: 1 present (no checksum recorded), 1 missing, 1 checksum ok, "
                                 "1 checksum differs; 1 of the missing can be fetched (ccreid-weights fetch)")
    assert main(["verify", "--configfile", cfg]) == 1
    # record: the sha256 of the file fetched by hand; a differing one is left for the user to look at
    assert main(["record", "--configfile", cfg]) == 1
    out = capsys.readouterr().out
    assert f"data/models/present.pth: sha256 {SHA} recorded in data/models/checksums.txt" in out
    assert "data/models/differs.pth: sha256" in out and "; not recorded" in out
    assert read_checksums(models / "checksums.txt") == {"data/models/differs.pth": "1" * 64,
                                                        "data/models/present.pth": SHA}
    (models / "differs.pth").unlink()
    (models / "missing.pth").write_bytes(WEIGHTS)
    assert main(["verify", "--configfile", cfg]) == 1  # differs.pth is missing now
    (models / "differs.pth").write_bytes(b"")
    (models / "checksums.txt").write_text(f"{SHA}  data/models/present.pth\n"
                                          f"{hashlib.sha256(b'').hexdigest()}  data/models/differs.pth\n")
    assert main(["verify", "--configfile", cfg]) == 0


def test_a_torchvision_file_is_checked_against_the_digits_in_its_name(workdir, capsys):
    cfg = overlay(workdir, {"methods": ["baseline", "deskpro"]})
    path = workdir / "torch/hub/checkpoints/resnet50-0676ba61.pth"  # torch.hub.get_dir() under $TORCH_HOME
    path.parent.mkdir(parents=True)
    path.write_bytes(WEIGHTS)  # not the file resnet50-0676ba61.pth's name promises
    assert main(["list", "--configfile", cfg]) == 0
    out = capsys.readouterr().out
    assert f"checksum differs: {path}" in out
    assert f"sha256 {SHA}, expected one beginning 0676ba61 (torchvision's file name)" in out
    # OSNet's file is a Google Drive download: listed with where to get it by hand, never fetched
    assert f"missing: {workdir}/torch/checkpoints/osnet_x1_0_imagenet.pth" in out
    assert "get it by hand: https://drive.google.com/uc?id=1LaG1EJpHrxdAxKnSCJ_i0u-nbxSAeiFY" in out


@pytest.mark.slow
def test_the_configuration_s_files_by_dataset_method_and_body(workdir):
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["datasets"]["prcc"]["stages"] = {"parsing": {"backend": "schp-atr"}}
    config["methods"] = ["cal", "3dsl", "deskpro"]
    config["body"] = {"model": "data/models/smpl/SMPL_NEUTRAL.pkl", "mocap": "data/models/amass/CMU"}
    files = {str(e.path): e for e in needed_files(config)}
    schp = files["data/models/exp-schp-201908301523-atr.pth"]
    assert schp.used_by == {"parsing backend schp-atr": ["datasets.prcc.stages"]} and schp.url is None
    assert "SCHP README" in schp.source
    resnet = files[str(workdir / "torch/hub/checkpoints/resnet50-0676ba61.pth")]
    assert resnet.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    # the demo scale trains from scratch; 3DSL defines no deepchange scale, so no 3DSL run there
    assert "synthetic" not in str(resnet.used_by) and "3dsl at scale deepchange" not in resnet.used_by
    assert resnet.used_by["cal at scale deepchange"] == ["deepchange"]
    assert "prcc" in resnet.used_by["3dsl at scale paper"]
    osnet = files[str(workdir / "torch/checkpoints/osnet_x1_0_imagenet.pth")]
    assert osnet.url is None and "drive.google.com" in osnet.source
    assert list(osnet.used_by) == ["deskpro at scale paper"]
    body = files["data/models/smpl/SMPL_NEUTRAL.pkl"]
    assert body.used_by == {"body.model": ["3dsl"]} and "smpl.is.tue.mpg.de" in body.source
    assert files["data/models/amass/CMU"].folder
    assert len(files) == 5
    # scales.<dataset>.<method>: the scale that run trains at, as the workflow plans it (demo: from scratch)
    config["scales"] = {"prcc": {"3dsl": "demo"}}
    resnet = {str(e.path): e for e in needed_files(config)}[str(resnet.path)]
    assert "prcc" not in resnet.used_by.get("3dsl at scale paper", [])
    assert "prcc" in resnet.used_by["cal at scale paper"]
    # a named experiment's backends and runs: listed with the experiment that uses them
    config["experiments"] = {"sam": {"stages": {"silhouettes": {"backend": "sam"}}},
                             "demo3dsl": {"scales": {"prcc": {"3dsl": "demo"}}}}
    with_experiments = {str(e.path): e for e in needed_files(config)}
    sam = with_experiments["data/models/sam_vit_b_01ec64.pth"]
    assert sam.used_by == {"silhouettes backend sam": ["stages (experiment sam)"]}
    # what the default config uses already is not listed again for each experiment
    assert with_experiments[str(resnet.path)].used_by == resnet.used_by
    del config["experiments"]
    # --all: every configured backend's file, the learned backends of the shipped config included
    every = {str(e.path) for e in needed_files(config, every_backend=True)}
    assert {"data/models/sam_vit_b_01ec64.pth", "data/models/GPEN-BFR-512.pth",
            "data/models/fast_res50_256x192.pth"} <= every


def test_config_files_merge_in_order_and_are_checked(workdir, server, capsys):
    first = overlay(workdir, sam_from("https://wrong.example/w.pth"), "first.yaml")
    second = overlay(workdir, {"backends": {"silhouettes": {"sam": {"url": f"{server.url}/whole.pth"}}}},
                     "second.yaml")
    assert main(["fetch", "--configfile", first, second]) == 0  # the second's url, the first's model_file
    assert (workdir / "data/models/w.pth").read_bytes() == WEIGHTS
    prose = overlay(workdir, {"backends": {"silhouettes": {"sam": {"url": "the SAM README"}}}}, "prose.yaml")
    assert main(["list", "--configfile", prose]) == 2
    line = error_line(capsys)
    assert "backends.silhouettes.sam.url: 'the SAM README' does not match" in line
    (workdir / "twice.yaml").write_text("methods: []\nmethods: [cal]\n")
    assert main(["list", "--configfile", "twice.yaml"]) == 2
    assert "twice.yaml:2:1: duplicate key 'methods'" in error_line(capsys)
    assert main(["list", "--configfile", "absent.yaml"]) == 2
    assert error_line(capsys) == "error: absent.yaml: no such config file"


def test_a_malformed_checksums_file_is_named_with_its_line(workdir, capsys):
    (workdir / "data/models").mkdir(parents=True)
    (workdir / "data/models/checksums.txt").write_text(f"# comment\n\n{SHA} data/models/w.pth\n")
    with pytest.raises(InputError, match=r"checksums.txt:3: expected '<sha256>  <path>'"):
        read_checksums(workdir / "data/models/checksums.txt")


def test_the_shipped_config_s_urls_are_direct_downloads():
    """`url` is what fetch downloads: http(s), and never a Google Drive page (those go under `source`)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    urls = {f"{stage}.{name}": spec["url"] for stage, backends in config["backends"].items()
            for name, spec in backends.items() if "url" in spec}
    assert set(urls) == {"silhouettes.sam", "faces.retinaface", "faces_restored.gpen"}
    assert all(re.fullmatch(r"https://\S+\.(pth|zip)", u) and "drive.google" not in u for u in urls.values())
    assert "drive.google.com" in config["backends"]["keypoints"]["alphapose"]["source"]
    assert read_checksums(REPO / "data/models/checksums.txt") == {}  # comments only: nothing could be verified


# --- trainer.pretrained ------------------------------------------------------------------------------------------


def shipped_configs():
    for path in sorted((REPO / "config/methods").glob("*.yaml")):
        spec = read_method_file(path)
        for scale in ["paper", *spec["scales"]]:
            for dataset_format in [None, *spec["dataset_defaults"]]:
                yield path.stem, scale, load_method_config(path, scale, (), dataset_format)


def test_pretrained_files_of_every_shipped_method_at_every_scale(monkeypatch, tmp_path):
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    seen = set()
    for method, scale, cfg in shipped_configs():
        files = pretrained_files(cfg)
        seen.add((method, scale))
        if scale in ("demo", "tiny"):  # offline: from scratch
            assert files == [], (method, scale)
            continue
        (f,) = files
        if method.startswith("deskpro"):
            assert f.path == tmp_path / "th/checkpoints/osnet_x1_0_imagenet.pth" == torchreid_cache_file()
            assert f.url is None and f.kind == "torchreid" and "drive.google.com" in f.source
        else:
            assert f.path == tmp_path / "hub/checkpoints/resnet50-0676ba61.pth", (method, scale)
            assert f.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
            assert f.kind == "torchvision" and f.sha256_prefix == "0676ba61"
    assert {m for m, _ in seen} == {"baseline", "cal", "3dsl", "cre_bsga", "deskpro_teacher", "deskpro"}
    assert {("cal", "ccvid"), ("baseline", "deepchange"), ("3dsl", "tiny")} <= seen


def test_pretrained_files_name_the_file_the_loader_opens(monkeypatch, tmp_path):
    import torch
    import torchvision

    from trainer.models import build_backbone
    from trainer.models.osnet import build_osnet_x1_0

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cfg = {"method": "baseline", "model": {"backbone": "resnet18", "pretrained": "IMAGENET1K_V1"}}
    (listed,) = pretrained_files(cfg)
    with pytest.raises(MissingInputError, match=re.escape(str(listed.path))):
        build_backbone("resnet18", "IMAGENET1K_V1")
    listed.path.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), listed.path)
    trunk, _ = build_backbone("resnet18", "IMAGENET1K_V1")  # loads from exactly the listed path
    assert torch.equal(trunk[0].weight, reference.conv1.weight)
    (osnet,) = pretrained_files({"method": "deskpro", "model": {"pretrained": "imagenet"}})
    with pytest.raises(MissingInputError, match=re.escape(str(osnet.path))):
        build_osnet_x1_0("imagenet")
    assert pretrained_files({"method": "deskpro", "model": {"pretrained": "none"}}) == []


def test_pretrained_paths_and_names():
    # a copy of torchvision's release under its own name is fetchable from torchvision's address
    mine = backbone_weights("resnet50", "data/models/resnet50-0676ba61.pth")
    assert mine.kind == "file" and mine.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    other = backbone_weights("resnet50", "data/models/mine.pth")
    assert other.url is None and other.path == Path("data/models/mine.pth")
    with pytest.raises(InputError, match="not a torchvision weights name for resnet50"):
        backbone_weights("resnet50", "IMAGENET_V9")
    with pytest.raises(InputError, match="model.backbone 'vgg16': no such backbone"):
        pretrained_files({"method": "x", "model": {"backbone": "vgg16", "pretrained": "IMAGENET1K_V1"}})
