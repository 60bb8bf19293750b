"""Convert the SmolLM2 GGUF fixture once into a Hugging Face folder for `bench/compare_smollm2.yaml`.

    python -m bench.smollm2_hf [--out /tmp/smollm2-hf]

transformers de-quantizes the GGUF (Q4_1) to fp32 but keeps an `hf_quantizer`, so `save_pretrained` refuses;
the quantizer state is dropped first (see DESIGN.md, known traps). Loading takes ~20 s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import REPO

FIXTURE = REPO.parent / "shared" / "fixtures" / "smollm2-135m-instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def convert(out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FIXTURE, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(FIXTURE, gguf_file=GGUF, dtype=torch.float32)
    if hasattr(model, "hf_quantizer"):
        del model.hf_quantizer
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.smollm2_hf", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/smollm2-hf")
    out = Path(parser.parse_args().out)
    if (out / "config.json").is_file():
        print(f"{out} already holds the converted model")
        return
    print(f"wrote {convert(out)}")


if __name__ == "__main__":
    main()
