"""Remote TVM devices through a real RPC tracker and server on localhost (TVM's own
``tvm.exec.rpc_tracker`` / ``tvm.exec.rpc_server``), started and stopped here."""

from __future__ import annotations

import json
import shutil

import pytest

from hwnas.cli import main
from hwnas.errors import DeviceUnreachableError
from hwnas.testing import LocalTvmRpc, free_port

tvm = pytest.importorskip("tvm")
pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado: pip install 'hwnas[tvm]'")

pytestmark = [pytest.mark.tvm, pytest.mark.slow]


@pytest.fixture(scope="module")
def rpc_devices(tmp_path_factory):
    rpc = LocalTvmRpc()
    d = tmp_path_factory.mktemp("remote")
    (d / "devices.toml").write_text(f"""
[devices.rpc-host]
base = "cpu-tvm"
description = "this machine behind a TVM RPC tracker (tests)"
[devices.rpc-host.remote]
tracker = "127.0.0.1:{rpc.port}"
key = "{rpc.key}"
timeout_s = 10
[devices.rpc-nokey]
base = "cpu-tvm"
[devices.rpc-nokey.remote]
tracker = "127.0.0.1:{rpc.port}"
key = "nobody"
[devices.rpc-dead]
base = "cpu-tvm"
[devices.rpc-dead.remote]
tracker = "127.0.0.1:{free_port()}"
key = "x"
""")
    yield rpc, d
    rpc.close()


def test_remote_profile_model_and_fingerprint(rpc_devices, tmp_path, capsys) -> None:
    rpc, d = rpc_devices
    import onnx

    from hwnas import zoo

    onnx.save(zoo.create("mobilenetv2", 0.35, 32, 10).onnx, str(tmp_path / "m.onnx"))
    rc = main(["profile-model", str(tmp_path / "m.onnx"), "--device", "rpc-host", "--devices-file",
               str(d / "devices.toml"), "--db", str(tmp_path / "s.sqlite"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["latency_ms"] > 0
    from hwnas.devices import DeviceRegistry
    from hwnas.profilers import fingerprint

    reg = DeviceRegistry()
    reg.add(__import__("hwnas").get_device("cpu-tvm"))
    reg.load_toml(d / "devices.toml")
    fp = fingerprint(reg.get("rpc-host"))
    assert f"key {rpc.key}" in fp.runtime_version and fp.id != fingerprint(reg.get("cpu-tvm")).id


def test_devices_check(rpc_devices, capsys) -> None:
    rpc, d = rpc_devices
    assert main(["devices", "check", "rpc-host", "--devices-file", str(d / "devices.toml")]) == 0
    out = capsys.readouterr().out
    assert "answers, 1 server(s) under key" in out and "a trivial kernel ran there" in out


@pytest.mark.parametrize("name,words", [
    ("rpc-nokey", "no server is registered under key 'nobody'"),
    ("rpc-dead", "does not answer"),
])
def test_unreachable_remotes_are_one_line(rpc_devices, name, words, tmp_path, capsys) -> None:
    _, d = rpc_devices
    (tmp_path / "ops.txt").write_text("act_i8_r8_arelu\n")
    for args in (["devices", "check", name], ["profile", "--device", name, "--ops", str(tmp_path / "ops.txt"),
                                              "--db", str(tmp_path / "s.sqlite"), "--no-drift-check"]):
        rc = main([*args, "--devices-file", str(d / "devices.toml")])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error")]
        assert rc == 2 and words in err and "Traceback" not in err and len(errors) == 1, err


def test_lost_server_keeps_what_was_measured_and_resumes(rpc_devices, tmp_path) -> None:
    rpc, d = rpc_devices
    from hwnas.devices import DeviceRegistry, default_registry
    from hwnas.profilers import OpConfig, Profiler, ProfileStore
    from hwnas.testing import FAST_POLICY

    reg = DeviceRegistry([default_registry().get("cpu-tvm")])
    reg.load_toml(d / "devices.toml")
    dev = reg.get("rpc-host")
    cfgs = [OpConfig.parse(f"act_i{c}_r8_arelu") for c in (8, 16, 24, 32)]
    done = []

    def stop_after_two(m) -> None:
        done.append(m)
        if len(done) == 2:
            rpc.stop_server()

    with ProfileStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(DeviceUnreachableError):
            Profiler(dev, FAST_POLICY, store).profile_ops(cfgs, on_done=stop_after_two)
        kept = store.op_measurements()
        assert len(kept) == 2 and set(kept["status"]) == {"ok"}  # nothing recorded as unsupported
    rpc.start_server()
    with ProfileStore(tmp_path / "s.sqlite") as store:
        run = Profiler(dev, FAST_POLICY, store).profile_ops(cfgs)
        assert len(run.skipped) == 2 and len(store.op_measurements()) == 4


def test_cross_compiled_library_is_an_aarch64_elf(tmp_path) -> None:
    cc = shutil.which("aarch64-linux-gnu-g++")
    if cc is None:
        pytest.skip("no aarch64 cross compiler: apt-get install g++-aarch64-linux-gnu")
    from hwnas.deploy import _tvm_export_library
    from hwnas.devices import Device
    from hwnas.profilers import OpConfig, build_onnx

    dev = Device.from_dict({"name": "pi", "runtime": "tvm",
                            "options": {"tvm_target": "llvm -mtriple=aarch64-linux-gnu -mattr=+neon"},
                            "remote": {"host": "127.0.0.1:9", "cross_compiler": "aarch64-linux-gnu-g++"}})
    _tvm_export_library(build_onnx(OpConfig.parse("conv_i8_o8_r8_k3_s1_arelu")), dev, tmp_path / "m.so")
    head = (tmp_path / "m.so").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


def test_tuning_runs_on_the_remote(rpc_devices, tmp_path, capsys) -> None:
    pytest.importorskip("xgboost", reason="MetaSchedule's cost model: pip install xgboost-cpu")
    from hwnas.profilers import _tvm_tune

    _, d = rpc_devices
    (tmp_path / "ops.txt").write_text("conv_i8_o8_r8_k3_s1_g1_arelu\n")
    rc = main(["profile", "--device", "rpc-host", "--tune-trials", "2", "--ops", str(tmp_path / "ops.txt"),
               "--db", str(tmp_path / "s.sqlite"), "--no-drift-check", "--devices-file", str(d / "devices.toml")])
    assert rc == 0, capsys.readouterr().err
    records = tmp_path / "tvm-tuning" / "rpc-host-2trials" / "database_tuning_record.json"
    assert records.exists() and len(records.read_text().splitlines()) >= 1
    assert _tvm_tune._rpc_runner.cache_info().currsize >= 1  # the trials ran over the tracker


def test_tuning_a_remote_without_tracker_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "devices.toml").write_text("""
[devices.direct]
base = "cpu-tvm"
[devices.direct.remote]
host = "127.0.0.1:9"
""")
    (tmp_path / "ops.txt").write_text("act_i8_r8_arelu\n")
    rc = main(["profile", "--device", "direct", "--tune-trials", "2", "--ops", str(tmp_path / "ops.txt"),
               "--db", str(tmp_path / "s.sqlite"), "--no-drift-check", "--devices-file", str(tmp_path / "devices.toml")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and ("needs its tracker" in err or "does not answer" in err), err


@pytest.mark.parametrize("triple,machine", [
    ("aarch64-linux-android", 183),   # EM_AARCH64
    ("armv7a-linux-gnueabihf", 40),   # EM_ARM
])
def test_android_and_armv7_targets_compile_to_their_objects(triple, machine, tmp_path) -> None:
    """Without their cross compilers (the NDK, g++-arm-linux-gnueabihf) the objects TVM generates
    for those targets are still checked: a tar of them needs no linker."""
    import tarfile

    from hwnas.profilers import OpConfig, build_onnx, random_inputs
    from hwnas.profilers._tvm_tune import compile_onnx

    from hwnas.devices import Device

    dev = Device.from_dict(
        {"name": "arm", "runtime": "tvm", "options": {"tvm_target": f"llvm -mtriple={triple} -mattr=+neon"}})
    model = build_onnx(OpConfig.parse("conv_i8_o8_r8_k3_s1_arelu"))
    shapes = {k: list(v.shape) for k, v in random_inputs(model, 1).items()}
    from hwnas.profilers import get_backend

    compile_onnx(model, dev, get_backend("tvm").resolved_target(dev), shapes).export_library(str(tmp_path / "m.tar"))
    with tarfile.open(tmp_path / "m.tar") as tar:
        objects = [m for m in tar.getmembers() if m.name.endswith(".o")]
        heads = [tar.extractfile(m).read(20) for m in objects]
    assert objects and all(h[:4] == b"\x7fELF" and int.from_bytes(h[18:20], "little") == machine for h in heads)
