"""Baseline "gunicorn": the same task functions in Flask, under gunicorn with
4 sync workers (the classic Python deployment pyfleet is compared with).

    PYTHONPATH=workers:bench/baselines gunicorn -w 4 -b 127.0.0.1:3000 gunicorn_app:app

JSON bodies are the task's input; a raw XML body becomes ``xml`` with the
other fields from the query string, as in pyfleet.
"""

import json

from flask import Flask, Response, request

import pyfleet_tasks.csv_profile  # noqa: F401  (each import registers its tasks)
import pyfleet_tasks.diag  # noqa: F401
import pyfleet_tasks.echo  # noqa: F401
import pyfleet_tasks.hash_digest  # noqa: F401
import pyfleet_tasks.stats  # noqa: F401
import pyfleet_tasks.text_stats  # noqa: F401
import pyfleet_tasks.xml_import  # noqa: F401
from pyfleet import TaskError, registry

app = Flask(__name__)


@app.post("/api/tasks/<name>")
def run_task(name):
    task = registry.get(name)
    if task is None:
        return Response('{"error": "no such task"}', status=404, mimetype="application/json")
    if request.mimetype in ("application/xml", "text/xml"):
        value = {key: int(v) if v.isdigit() else v for key, v in request.args.items()}
        value["xml"] = request.get_data(as_text=True)
    else:
        value = request.get_json()
    try:
        result = task.fn(value)
    except TaskError as exc:
        return Response(json.dumps({"error": exc.message}), status=422, mimetype="application/json")
    return Response(json.dumps(result), mimetype="application/json")


@app.get("/health")
def health():
    return {"status": "ok"}
