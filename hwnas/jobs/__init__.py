"""Jobs: the bodies of the CLI's commands as library functions. They take callbacks (progress,
messages), return result objects and never print; ``hwnas.cli`` renders them.

>>> from hwnas.jobs import space_key
>>> space_key("nb201", {"classes": 10})
'nb201'
"""

from hwnas.jobs._common import (Message, Progress, check_count, check_device, detect_devices, device_status, check_fraction, check_positive, get_device,
                                list_devices, load_devices, no_message, no_progress, open_store, timing_policy,
                                tuned_device, user_devices_file)
from hwnas.jobs._adapt import Candidate, adapt_predictor, default_candidates
from hwnas.jobs._export import arch_spec, export
from hwnas.jobs._farm import FarmResult, device_resource, measure_on_ray, profile_devices
from hwnas.jobs._profile import ProfileResult, model_summary, parse_key_values, profile_model, profile_ops
from hwnas.jobs._predictors import (PredictorEvaluation, TrainReport, default_predictor_dir, evaluate_predictor,
                                    load_predictor, predictor_dir, predictor_info, repeat_check, space_key, train_device_predictor,
                                    train_predictor)
from hwnas.jobs._quickstart import (MIN_MARGIN, SMOKE, PipelineConfig, PipelineResult, quickstart, run_pipeline,
                                    search_budget)
from hwnas.jobs._search import (SEARCH_OPTIONS, arch_latency_on, create_search, measure_front, proxyless_search,
                                write_search)
from hwnas.jobs._multifidelity import multifidelity_schedule, multifidelity_search
from hwnas.jobs._ofa import once_for_all_search
from hwnas.jobs._scaling import compound_scaling
from hwnas.jobs._darts import darts_search
from hwnas.jobs._enas import enas_search
from hwnas.jobs._pnas import pnas_search
from hwnas.jobs._hypernet import hypernetwork_search
from hwnas.jobs._space_models import space_calibration_models, space_models, spread_archs

__all__ = ["compound_scaling", "darts_search", "enas_search", "pnas_search", "hypernetwork_search", "Message", "Progress", "check_device", "detect_devices", "device_status", "check_count", "check_fraction", "check_positive", "get_device", "list_devices",
           "load_devices", "no_message", "no_progress", "open_store", "timing_policy", "tuned_device", "user_devices_file",
           "arch_spec", "export", "PredictorEvaluation", "TrainReport", "default_predictor_dir", "evaluate_predictor",
           "load_predictor", "predictor_dir", "predictor_info", "repeat_check", "space_key", "train_device_predictor",
           "train_predictor", "MIN_MARGIN", "SMOKE", "PipelineConfig", "PipelineResult", "quickstart",
           "run_pipeline", "search_budget", "SEARCH_OPTIONS", "arch_latency_on", "create_search", "measure_front",
           "proxyless_search", "write_search", "space_calibration_models", "space_models", "spread_archs",
           "ProfileResult", "model_summary", "parse_key_values", "profile_model", "profile_ops",
           "adapt_predictor", "Candidate", "default_candidates", "FarmResult", "device_resource", "measure_on_ray",
           "profile_devices", "multifidelity_schedule", "multifidelity_search", "once_for_all_search"]
