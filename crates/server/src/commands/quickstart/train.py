"""The quickstart's training step: a churn classifier with scikit-learn, logged with the stock mlflow client.

Loopline runs it with MLFLOW_TRACKING_URI and MLFLOW_RUN_ID set (a run nested in the pipeline's run) and
LOOPLINE_DATASET_CHURN_TRAIN naming the dataset version it was given, so nothing here knows about Loopline.
"""

import os

import mlflow
import mlflow.sklearn
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

data = pd.read_csv(os.environ["LOOPLINE_DATASET_CHURN_TRAIN"])
features = ["tenure", "monthly_charges", "support_calls", "contract"]
X, y = data[features], data["churn"]
model = Pipeline([
    ("prepare", ColumnTransformer([
        ("numbers", StandardScaler(), ["tenure", "monthly_charges", "support_calls"]),
        ("contract", OneHotEncoder(handle_unknown="ignore"), ["contract"]),
    ])),
    ("classify", LogisticRegression(max_iter=1000)),
])
with mlflow.start_run():
    model.fit(X, y)
    accuracy = model.score(X, y)
    mlflow.log_params({"model": "logistic_regression", "rows": len(data)})
    mlflow.log_metric("train_accuracy", accuracy)
    mlflow.sklearn.log_model(model, name="model", input_example=X.head(5))
print(f"trained on {len(data)} rows: training accuracy {accuracy:.3f}")
