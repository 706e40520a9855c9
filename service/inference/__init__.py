"""The explain pipeline: a request is decoded once into a frozen Job (job.py), queued in the model's micro-batcher
(pipeline.py), run on the device thread (run.py), and its answer encoded from the results (encode.py)."""

from service.inference.job import PREDICT, BatchKey, Job, Sample, explain_job, predict_job
from service.inference.pipeline import answer, decode_instances, decode_upload
from service.inference.run import run_batch

__all__ = ["PREDICT", "BatchKey", "Job", "Sample", "answer", "decode_instances", "decode_upload", "explain_job",
           "predict_job", "run_batch"]
