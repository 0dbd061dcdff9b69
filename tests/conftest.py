import os

from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# How many random cases each property test tries. `ci` is the full strength the suite is judged
# by (the default); `dev` is the fast tier's (HYPOTHESIS_PROFILE=dev). A test that needs a fixed
# count (the planted-bug hunts, derandomized) says so where it sets it.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=100, **_COMMON)
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
