"""The ``mlchaos demo``: a small ML system (system.py: an inference service, its Feast-format feature store and its
model) behind three sidecars, with three experiments judged by their hypotheses (story.py, ``make demo``); the
one-sidecar demo on an embedded iris model (model.py, run.py, ``--classic``); the LLM demo (llm.py, llm_run.py);
and the bounded load driver they share (driver.py).

Everything here binds 127.0.0.1 only.
"""
