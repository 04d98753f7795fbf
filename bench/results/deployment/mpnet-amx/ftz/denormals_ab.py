"""OpenVINO bf16 on AMX: the fine-tuned 6x768 copy and the pretrained copy, with and without CPU_DENORMALS_OPTIMIZATION;
ORT fp32 with and without session.set_denormal_as_zero. b1x128, 1 thread, interleaved rounds, median ms."""
import statistics
import time

import numpy as np
import onnxruntime as ort
import openvino as ov

ART = {"c1": "runs/deployment/mpnet-amx/mpnet-6x768-c1-openvino", "pre6": "/tmp/probe/e-6-openvino-cpu-fp32"}
rng = np.random.default_rng(0)
ids = rng.integers(1000, 20000, size=(1, 128)).astype(np.int64)
mask = np.ones((1, 128), dtype=np.int64)
core = ov.Core()

def ov_model(path, denorm):
    cfg = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
    if denorm:
        cfg["CPU_DENORMALS_OPTIMIZATION"] = True
    c = core.compile_model(f"{path}/openvino/model.xml", "CPU", cfg)
    r = c.create_infer_request()
    names = [i.any_name for i in c.inputs]
    feeds = {n: (ids if "input" in n else mask) for n in names}
    return lambda: r.infer(feeds)

def ort_model(path, denorm):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if denorm:
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    s = ort.InferenceSession(f"{path}/model.onnx", so, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    feeds = {n: (ids if "input" in n else mask) for n in names}
    return lambda: s.run(None, feeds)

def timeit(f, n=30):
    for _ in range(3):
        f()
    t = []
    for _ in range(n):
        a = time.perf_counter()
        f()
        t.append((time.perf_counter() - a) * 1000)
    return statistics.median(t)

runs = {}
for name, path in ART.items():
    for d in (False, True):
        runs[f"ov {name} denorm={d}"] = ov_model(path, d)
runs["ort-fp32 c1 denorm=False"] = ort_model("runs/deployment/mpnet-amx/mpnet-6x768-c1-onnx-fp32", False)
runs["ort-fp32 c1 denorm=True"] = ort_model("runs/deployment/mpnet-amx/mpnet-6x768-c1-onnx-fp32", True)
res = {k: [] for k in runs}
for _round in range(3):
    for k, f in runs.items():
        res[k].append(timeit(f))
for k, v in res.items():
    print(f"{k:32s} " + " ".join(f"{x:7.2f}" for x in v) + f"  median {statistics.median(v):7.2f}")
