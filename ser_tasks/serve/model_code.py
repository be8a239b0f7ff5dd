"""The registered model's code file (MLflow "models from code").

It is logged with every version, and run when the version is loaded, so loading unpickles nothing
and needs only this package installed.

Not imported by the pipeline; :func:`ser_tasks.serve.predict.log_emotion_model` logs this file.
"""

import mlflow

from ser_tasks.serve.predict import EmotionModel

mlflow.models.set_model(EmotionModel())
