import json, sys
import tvm
from tvm.relax.frontend.onnx import from_onnx
from tvm.s_tir import meta_schedule as ms
from hwnas.profilers import OpConfig, build_onnx, get_backend, random_inputs
from hwnas.devices import default_registry
from hwnas.profilers._tvm_tune import _fused, tuning_target
dev=default_registry().get("cpu-tvm")
m=build_onnx(OpConfig.parse("conv_i8_o8_r8_k3_s1_g1_arelu"))
feeds=random_inputs(m,1)
mod=from_onnx(m, shape_dict={k:list(v.shape) for k,v in feeds.items()}, keep_params_in_input=False)
t=tuning_target(get_backend("tvm").resolved_target(dev), dev)
print(t, flush=True)
tasks=ms.relax_integration.extract_tasks(_fused(mod,t),t)
print(len(tasks), [x.task_name for x in tasks], flush=True)
db = ms.database.JSONDatabase(work_dir="/tmp/tune2", module_equality="structural")
print("db", flush=True)
print(db.has_workload(tasks[0].dispatched[0]), flush=True)
muts = {k: v for k, v in ms.mutator.Mutator.create("llvm").items() if type(k).__name__ in ("MutateTileSize", "MutateUnroll")}
sg = ms.space_generator.PostOrderApply(sch_rules="from-target", postprocs="from-target", mutator_probs=muts)
ctx, w = ms.relax_integration.extracted_tasks_to_tune_contexts(extracted_tasks=tasks, work_dir="/tmp/tune2", seed=0, space=sg)
print("ctx", flush=True)
b=ms.builder.LocalBuilder(); print("builder", flush=True)
r=ms.runner.LocalRunner(); print("runner", flush=True)
ms.tune.tune_tasks(tasks=ctx, task_weights=w, work_dir="/tmp/tune2", max_trials_global=2*len(tasks), max_trials_per_task=2, num_trials_per_iter=2, builder=b, runner=r, database=db, cost_model="xgb")
print("tuned", flush=True)

ex = ms.relax_integration.compile_relax(db, mod, t, params=None)
from tvm import relax
import numpy as np
vm = relax.VirtualMachine(ex, tvm.cpu())
x = tvm.runtime.tensor(list(feeds.values())[0])
print("tuned ms", np.median(vm.time_evaluator("main", tvm.cpu(), number=50, repeat=5)(x).results)*1e3)
ex0 = tvm.compile(mod, target=t); vm0 = relax.VirtualMachine(ex0, tvm.cpu())
print("untuned ms", np.median(vm0.time_evaluator("main", tvm.cpu(), number=50, repeat=5)(x).results)*1e3)
print(np.abs(vm["main"](x).numpy()-vm0["main"](x).numpy()).max())
