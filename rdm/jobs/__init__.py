"""Background jobs: studies, generation runs, retrieval evaluations and map fits in a worker process, not in
the dashboard's script.

``book`` keeps what a user sees of each job (``jobs.sqlite``), ``queue`` carries them to the worker (huey,
``queue.sqlite``), ``tasks`` is the work of each kind. The top of the stack below the front ends: it may
import every stage (``rdm.runs``, ``rdm.study``, ``rdm.curation`` ...) and none imports it.
"""

from rdm.jobs.book import ACTIVE, WORKER_PID, Job, JobBook, JobCancelled
from rdm.jobs.queue import (ensure_worker, make_queue, resume, run_worker, submit_evaluation, submit_generation,
                            submit_map, submit_study, worker_running)
from rdm.jobs.tasks import evaluation_file, execute, study_request

__all__ = ["ACTIVE", "WORKER_PID", "Job", "JobBook", "JobCancelled", "ensure_worker", "evaluation_file", "execute",
           "make_queue", "resume", "run_worker", "study_request", "submit_evaluation", "submit_generation",
           "submit_map", "submit_study", "worker_running"]
