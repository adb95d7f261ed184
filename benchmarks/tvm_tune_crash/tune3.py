import tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms
A = te.placeholder((64, 64), name="A"); B = te.placeholder((64, 64), name="B")
k = te.reduce_axis((0, 64), name="k")
C = te.compute((64, 64), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
f = te.create_prim_func([A, B, C])
mod = tvm.IRModule({"main": f})
print("made", flush=True)
t = tvm.target.Target({"kind": "llvm", "num-cores": 1})
ctx = ms.TuneContext(mod=mod, target=t, space_generator="post-order-apply", search_strategy="evolutionary", task_name="mm")
print("ctx ok", flush=True)
