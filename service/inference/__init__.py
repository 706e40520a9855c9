"""The one pipeline every protocol goes through: a request decoded once into a frozen Job (`job`), queued in the
model's micro-batcher and run on the device thread (`pipeline`, `run`), its results plain data (`results`), its
answer encoded by the protocol's codec (`codec`: LitServe's decode_request / encode_response).

Imports: service.errors, service.lrp, service.serving, service.faithfulness, service.modality, service.loader,
service.runtime.
"""

from service.inference.codec import Codec
from service.inference.job import PREDICT, BatchKey, Job, Sample, explain_job, predict_job
from service.inference.pipeline import answer, decode_instances, decode_upload
from service.inference.results import Answered, Explained, Predicted, Result, TokensExplained, of_kind
from service.inference.run import PipelineState, run_batch

__all__ = ["PREDICT", "Answered", "BatchKey", "Codec", "Explained", "Job", "PipelineState", "Predicted", "Result",
           "Sample", "TokensExplained", "answer", "decode_instances", "decode_upload", "explain_job", "of_kind",
           "predict_job", "run_batch"]
