"""Regenerates the committed gRPC stubs in python/trustee/grpc_api from the .proto files here.

    python proto/generate.py [OUT_DIR]

OUT_DIR defaults to python/ (the stubs land in OUT_DIR/trustee/grpc_api). The protos are
mapped into the trustee/grpc_api import path so the generated modules import each other as
`trustee.grpc_api.…`; the protobuf package names (`attestation`, `reference`) and so the wire
names stay those of the .proto files.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTOS = ("attestation.proto", "reference.proto")
IMPORT_PATH = "trustee/grpc_api"


def generate(out: Path) -> None:
    from grpc_tools import protoc  # dev dependency: only regeneration needs it

    bin_dir = Path(sys.executable).parent
    (out / IMPORT_PATH).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{IMPORT_PATH}={HERE}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(f"{IMPORT_PATH}/{name}" for name in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("proto/generate.py: protoc failed (see above)")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "python")
