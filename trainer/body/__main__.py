"""python -m trainer.body {standin,convert-smpl} ...

  standin --out DIR          the stand-in body model (DIR/STANDIN_NEUTRAL.pkl, SMPL's format, NOT SMPL) and
                             samples of its pose/shape prior in AMASS's layout (DIR/standin_prior_mocap.npz)
  convert-smpl SRC DST       an official SMPL .pkl (chumpy arrays) -> a plain-numpy pickle smplx loads
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli import reports_user_errors


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.body", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("standin", help="write the stand-in body model and its prior samples")
    s.add_argument("--out", required=True)
    s.add_argument("--frames", type=int, default=20000)
    c = sub.add_parser("convert-smpl", help="convert an official SMPL pickle (chumpy) to plain numpy")
    c.add_argument("src")
    c.add_argument("dst")
    a = ap.parse_args(argv)
    if a.command == "standin":
        from .mocap import STANDIN_PRIOR_NAME, write_standin_prior
        from .standin import STANDIN_NAME, write_standin
        out = Path(a.out)
        print(f"wrote {write_standin(out / STANDIN_NAME)} (stand-in body model, not SMPL)")
        print(f"wrote {write_standin_prior(out / STANDIN_PRIOR_NAME, a.frames)} (stand-in prior samples, not mocap)")
    else:
        from .convert import convert_smpl
        print(f"wrote {convert_smpl(a.src, a.dst)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
