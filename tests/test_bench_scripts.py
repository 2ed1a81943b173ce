"""The evaluation and data-builder benchmarks run end to end on tiny sizes and print their tables; no timing is
asserted, only what must hold whatever the machine (batched greedy equals per-sample greedy, every figure > 0)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _rows(text: str, first_cell: str) -> list[list[str]]:
    """Table rows whose first cell starts with `first_cell`, as lists of stripped cells."""
    lines = [line.strip().strip("|") for line in text.splitlines() if line.startswith("|")]
    rows = ([c.strip() for c in line.split("|")] for line in lines)
    return [cells for cells in rows if cells[0].startswith(first_cell)]


def test_bench_eval_prints_its_three_tables(tmp_path):
    out = _run("bench_eval.py", "--cache", str(tmp_path), "--sources", "4", "--rows", "8", "--batch-sizes", "4",
               "--repeats", "1", "--max-new-tokens", "4")
    for header in ("**(a) greedy generation**", "**(b) hidden_features**", "**(c) evaluate() stages**"):
        assert header in out
    (batched,) = _rows(out, "4")[:1]
    assert batched[-1] == "8/8"  # batching (left padding) must not change a single greedy completion
    assert float(batched[1]) > 0 and batched[2].endswith("x")
    stages = {r[0]: float(r[1]) for r in _rows(out.split("**(c)")[1], "") if r[0] not in ("stage", "---")}
    assert list(stages)[:2] == ["generate (greedy, batched)", "metrics (bootstrap)"]
    assert "probes (5-fold, 3 labels)" in stages and stages["total"] > 0


def test_bench_data_builders_prints_rates_against_the_floor():
    out = _run("bench_data_builders.py", "--image-sizes", "64", "--sources", "4", "--scale", "1", "--repeats", "1",
               "--disk-images", "20", "--disk-size", "96", "64")
    synthetic, disk = out.split("**On-disk source, 96x64 JPEGs**")
    assert "**64 px images**" in synthetic
    for text, normal in ((synthetic, "normal (scene + render)"), (disk, "normal (read + decode)")):
        damages = _rows(text, "per damage")
        assert {r[1] for r in damages} >= {normal, "blank@1", "swap", "misleading_hint"}
        full = _rows(text, "full build")
        assert [r[1] for r in full] == ["num_proc=1", "num_proc=2"]
        assert full[0][2] == full[1][2]  # both pool sizes build the same rows
        for row in damages + full:
            build, floor = (float(v.replace(",", "")) for v in row[3:5])
            assert build > 0 and floor > 0 and row[5].endswith("%")
    assert _rows(disk, "per damage")[0][2] == "2"  # eval_sources: a tenth of the 20 images


def test_bench_gpu_launches_the_users_command_and_its_cpu_dry_run_drops_bf16(tmp_path):
    from benchmarks import bench_gpu

    qlora = next(spec for spec in bench_gpu.SPECS if "QLoRA" in spec.name)
    on_gpu = bench_gpu.command(qlora, tmp_path / "run", tmp_path, 40, cpu=False)
    assert on_gpu[1:5] == ["-m", "accelerate.commands.launch", "--config_file",
                           str(ROOT / "accelerate_configs" / "single_gpu.yaml")]
    assert on_gpu[5:8] == ["-m", "rlkit.train.grpo", "--config"]
    flags = dict(zip(on_gpu[9::2], on_gpu[10::2]))
    assert flags["--model_name_or_path"] == str(tmp_path / "sft") and flags["--max_steps"] == "40"
    assert flags["--bf16"] == flags["--load_in_4bit"] == flags["--use_peft"] == "true"
    dry = bench_gpu.command(qlora, tmp_path / "run", tmp_path, 2, cpu=True)
    assert dry[4:8] == [str(ROOT / "accelerate_configs" / "single_gpu.yaml"), "--cpu", "--mixed_precision", "no"]
    assert dict(zip(dry[12::2], dry[13::2]))["--bf16"] == "false"
    fp32 = next(spec for spec in bench_gpu.SPECS if spec.name == "GRPO, fp32")
    assert bench_gpu.command(fp32, tmp_path / "run", tmp_path, 2, cpu=True).count("--mixed_precision") == 1


def test_bench_gpu_refuses_to_run_without_a_gpu_unless_asked_for_a_dry_run():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "no CUDA device" in done.stderr and "--cpu" in done.stderr
