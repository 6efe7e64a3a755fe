"""The fraud models: XGBoost (imbalance-aware, calibrated) and a logistic-regression
baseline, behind one small interface; they take frames, never the database.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MlkitError
from .columns import NUMERIC_FEATURES

if TYPE_CHECKING:
    import pandas as pd

    from .booster import NativeBooster

MODEL_KINDS = ("xgboost", "logreg")
CATEGORICAL = "payment_method"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


@dataclass
class XGBoostFraud:
    """Gradient-boosted trees on the numeric features, `is_resale` and one-hot payment
    methods, positives up-weighted by sqrt(negatives / positives) and Platt-scaled on
    validation, so scores are probabilities the decision thresholds can use.

    Predictions run on libxgboost's C API (`booster.NativeBooster`), so scoring a loaded
    model never imports the `xgboost` package (about a second of imports); `booster_`, the
    package's Booster, is built from the artifact's bytes only where training, saving or
    gain importances need it."""

    max_depth: int = 3
    min_child_weight: float = 10.0
    learning_rate: float = 0.05
    num_boost_round: int = 800
    early_stopping_rounds: int = 60
    seed: int = 0
    categories_: list[str] = field(default_factory=list)
    calibration_: tuple[float, float] = (1.0, 0.0)
    best_iteration_: int = 0
    scale_pos_weight_: float = 1.0
    validation_scores_: np.ndarray | None = None  # out-of-sample, for choosing a threshold
    _booster: object = field(default=None, repr=False)  # xgboost.Booster, when made
    _saved: bytes | None = field(default=None, repr=False)  # the artifact's model bytes
    _native: NativeBooster | None = field(default=None, repr=False, compare=False)

    filename = "model.ubj"

    @property
    def booster_(self):
        """The xgboost package's Booster (loaded from the artifact's bytes on first use)."""
        if self._booster is None and self._saved is not None:
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(bytearray(self._saved))
            self._booster = booster
        return self._booster

    @booster_.setter
    def booster_(self, booster) -> None:
        self._booster, self._saved, self._native = booster, None, None

    def _predictor(self) -> NativeBooster:
        """The booster on the C API: from the artifact's bytes, or the trained booster's."""
        if self._native is None:
            from .booster import NativeBooster

            saved = self._saved if self._saved is not None else self._booster.save_raw("ubj")
            self._native = NativeBooster(saved)
        return self._native

    @property
    def _rounds(self) -> int:
        return self.best_iteration_ + 1

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        numeric = frame[list(NUMERIC_FEATURES)].to_numpy(dtype=np.float32)
        resale = frame["is_resale"].astype(bool).to_numpy(dtype=np.float32)[:, None]
        methods = frame[CATEGORICAL].astype(object).to_numpy()
        onehot = np.stack([methods == c for c in self.categories_], axis=1).astype(np.float32)
        return np.hstack([numeric, resale, onehot])

    @property
    def feature_names(self) -> list[str]:
        return [*NUMERIC_FEATURES, "is_resale", *[f"payment_method={c}" for c in self.categories_]]

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame) -> XGBoostFraud:
        """Early-stopped on validation AUC-PR, whose out-of-sample margins fit the Platt
        calibration, then refit on train + validation with the rounds scaled by the rows
        gained: the validation weeks are the most recent, and every fraud label counts."""
        import xgboost as xgb

        self.categories_ = sorted(train[CATEGORICAL].dropna().astype(str).unique())
        y_train, y_valid = train["label"].to_numpy(), valid["label"].to_numpy()
        positives = max(int(y_train.sum()), 1)
        self.scale_pos_weight_ = ((len(y_train) - positives) / positives) ** 0.5
        params = {
            "objective": "binary:logistic",
            "eval_metric": "aucpr",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": self.min_child_weight,
            "scale_pos_weight": self.scale_pos_weight_,
            "seed": self.seed,
            "nthread": 2,
        }
        dvalid = self._dmatrix(valid, y_valid)
        self.booster_ = xgb.train(
            params,
            self._dmatrix(train, y_train),
            num_boost_round=self.num_boost_round,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=self.early_stopping_rounds,
            verbose_eval=False,
        )
        self.best_iteration_ = int(self.booster_.best_iteration)
        margin = self._margin(valid)
        self.calibration_ = _platt(margin, y_valid)
        self.validation_scores_ = _sigmoid(self.calibration_[0] * margin + self.calibration_[1])

        import pandas as pd

        both = pd.concat([train, valid], ignore_index=True)
        rounds = round((self.best_iteration_ + 1) * len(both) / len(train))
        self.booster_ = xgb.train(
            params, self._dmatrix(both, both["label"].to_numpy()), num_boost_round=rounds
        )
        self.best_iteration_ = rounds - 1
        return self

    def _dmatrix(self, frame: pd.DataFrame, labels: np.ndarray | None = None):
        import xgboost as xgb

        return xgb.DMatrix(self._matrix(frame), label=labels, feature_names=self.feature_names)

    def _margin(self, frame: pd.DataFrame) -> np.ndarray:
        return self._predictor().predict(self._matrix(frame), rounds=self._rounds, kind="margin")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        a, b = self.calibration_
        return _sigmoid(a * self._margin(frame) + b)

    def _row(self, features: dict) -> np.ndarray:
        """One order's features as the (1, n) matrix `_matrix` builds for a frame."""
        values = [features.get(name) for name in NUMERIC_FEATURES]
        row = [np.nan if v is None else float(v) for v in values]
        row.append(float(bool(features.get("is_resale"))))
        row.extend(float(features.get(CATEGORICAL) == c) for c in self.categories_)
        return np.asarray([row], dtype=np.float32)

    def margins(self, matrix: np.ndarray) -> np.ndarray:
        """The margins (before calibration) of rows laid out as `_matrix` lays out a frame,
        float32, in one call: what a server scoring a batch of orders asks."""
        return self._predictor().inplace_predict(matrix, rounds=self._rounds, kind="margin")

    def matrix_contributions(self, matrix: np.ndarray) -> np.ndarray:
        """`contributions` of rows laid out as `_matrix` lays out a frame (bias left out)."""
        values = self._predictor().predict(matrix, rounds=self._rounds, kind="contributions")
        return values[:, :-1]

    def predict_one(self, features: dict) -> float:
        """One order's score without frames: a numpy row straight into the booster."""
        margin = self._predictor().inplace_predict(
            self._row(features), rounds=self._rounds, kind="margin"
        )
        a, b = self.calibration_
        return float(_sigmoid(a * np.asarray(margin, dtype=float) + b)[0])

    def contributions_one(self, features: dict) -> tuple[list[str], np.ndarray, str]:
        """`contributions` of one order, from its numpy row rather than a frame."""
        values = self._predictor().predict(
            self._row(features), rounds=self._rounds, kind="contributions"
        )
        return list(self.feature_names), values[:, :-1], "log-odds, before calibration"

    def params(self) -> dict:
        return {
            "model": "xgboost",
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "learning_rate": self.learning_rate,
            "best_iteration": self.best_iteration_,
            "scale_pos_weight": round(self.scale_pos_weight_, 4),
            "categories": self.categories_,
            "calibration": list(self.calibration_),
        }

    def importances(self) -> tuple[list[str], np.ndarray, str]:
        """Each feature's total gain over the trees."""
        gain = self.booster_.get_score(importance_type="gain")
        names = list(self.feature_names)
        return names, np.array([float(gain.get(n, 0.0)) for n in names]), "total gain"

    def contributions(self, frame: pd.DataFrame) -> tuple[list[str], np.ndarray, str]:
        """Per-order, per-feature contributions to the margin (XGBoost's exact tree SHAP
        values; the bias column left out)."""
        values = self._predictor().predict(
            self._matrix(frame), rounds=self._rounds, kind="contributions"
        )
        return list(self.feature_names), values[:, :-1], "log-odds, before calibration"

    def save(self, path: Path) -> None:
        self.booster_.save_model(str(path))

    @classmethod
    def load(cls, data: bytes, params: dict) -> XGBoostFraud:
        """The model of an artifact's verified bytes (XGBoost UBJ or JSON, never a pickle),
        loaded by libxgboost now, so a damaged artifact fails here."""
        model = cls(max_depth=params["max_depth"], learning_rate=params["learning_rate"])
        model._saved = bytes(data)
        model._predictor()
        model.best_iteration_ = int(params["best_iteration"])
        model.categories_ = list(params["categories"])
        model.calibration_ = tuple(params["calibration"])
        return model


@dataclass
class LogRegFraud:
    """The baseline: one scikit-learn Pipeline (numeric imputation + scaling, categorical
    imputation + one-hot, logistic regression), so training and inference share every step.

    One order (`predict_one`, `contributions_one`) is scored from the pipeline's fitted
    numbers with numpy (`LinearScorer`), the same arithmetic in the same order, so a
    loaded model scores an order without importing scikit-learn or pandas; `pipeline_`
    is rebuilt from the artifact's numbers only where frames are scored."""

    C: float = 1.0
    validation_scores_: np.ndarray | None = None
    _pipeline: object = field(default=None, repr=False)
    _document: dict | None = field(default=None, repr=False)  # the artifact's numbers
    _scorer: LinearScorer | None = field(default=None, repr=False, compare=False)
    filename = "logreg.json"  # numbers only: loading it cannot run code, unlike a pickle

    @property
    def pipeline_(self):
        """The fitted scikit-learn Pipeline (rebuilt from the artifact on first use)."""
        if self._pipeline is None and self._document is not None:
            self._pipeline = _logreg_pipeline(self._document, C=self.C)
        return self._pipeline

    @pipeline_.setter
    def pipeline_(self, pipeline) -> None:
        self._pipeline, self._document, self._scorer = pipeline, None, None

    def _one_order(self) -> LinearScorer:
        if self._scorer is None:
            document = self._document or _logreg_document(self._pipeline)
            self._scorer = LinearScorer.of(document)
        return self._scorer

    @staticmethod
    def _columns() -> list[str]:
        return [*NUMERIC_FEATURES, "is_resale", CATEGORICAL]

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[self._columns()].copy()
        out["is_resale"] = out["is_resale"].astype(float)
        out[CATEGORICAL] = out[CATEGORICAL].astype(object)
        return out

    def _new_pipeline(self):
        """The unfitted Pipeline: imputation, scaling and one-hot inside, then the model."""
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline, make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        numeric = [*NUMERIC_FEATURES, "is_resale"]
        prepare = ColumnTransformer(
            [
                (
                    "numeric",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                    ),
                    numeric,
                ),
                (
                    "categorical",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="missing"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    [CATEGORICAL],
                ),
            ]
        )
        return Pipeline(
            [("prepare", prepare), ("model", LogisticRegression(C=self.C, max_iter=2000))]
        )

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame) -> LogRegFraud:
        """Fitted on train, scored on validation (out of sample, for the threshold), then
        refit on train + validation: the same rows the XGBoost model finally learns from."""
        self.pipeline_ = self._new_pipeline()
        self.pipeline_.fit(self._inputs(train), train["label"].to_numpy())
        self.validation_scores_ = self.predict_proba(valid)
        import pandas as pd

        both = pd.concat([train, valid], ignore_index=True)
        self.pipeline_.fit(self._inputs(both), both["label"].to_numpy())
        self._scorer = None  # refitted in place: its numbers changed
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline_.predict_proba(self._inputs(frame))[:, 1]

    def predict_one(self, features: dict) -> float:
        scorer = self._one_order()
        row = scorer.row(features)
        if row is None:  # a value the numpy path does not reproduce: the Pipeline decides
            import pandas as pd

            return float(self.predict_proba(pd.DataFrame([features]))[0])
        return scorer.probability(row)

    def contributions_one(self, features: dict) -> tuple[list[str], np.ndarray, str]:
        scorer = self._one_order()
        row = scorer.row(features)
        if row is None:
            import pandas as pd

            return self.contributions(pd.DataFrame([features]))
        return list(scorer.names), row * scorer.coef[0], "log-odds"

    def params(self) -> dict:
        return {"model": "logreg", "C": self.C}

    def _prepared(self) -> tuple[list[str], np.ndarray]:
        prepare = self.pipeline_.named_steps["prepare"]
        names = [str(n) for n in prepare.get_feature_names_out()]
        return names, self.pipeline_.named_steps["model"].coef_[0].astype(float)

    def importances(self) -> tuple[list[str], np.ndarray, str]:
        """Each prepared column's coefficient (on the scaled feature)."""
        names, coefficients = self._prepared()
        return names, coefficients, "coefficient on the scaled feature"

    def contributions(self, frame: pd.DataFrame) -> tuple[list[str], np.ndarray, str]:
        """Per-order, per-column contributions to the log-odds: value times coefficient."""
        names, coefficients = self._prepared()
        matrix = self.pipeline_.named_steps["prepare"].transform(self._inputs(frame))
        matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
        return names, matrix * coefficients, "log-odds"

    def save(self, path: Path) -> None:
        """The fitted numbers of every step as JSON (see `LOGREG_FORMAT`)."""
        document = self._document or _logreg_document(self.pipeline_)
        Path(path).write_text(json.dumps(document, indent=1))

    @classmethod
    def load(cls, data: bytes, params: dict) -> LogRegFraud:
        """The Pipeline rebuilt from an artifact's verified JSON bytes."""
        try:
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("format") != LOGREG_FORMAT:
                raise ValueError(f"not a {LOGREG_FORMAT} document")
        except (ValueError, UnicodeDecodeError) as exc:
            raise MlkitError(
                f"the logistic-regression artifact is not {LOGREG_FORMAT} JSON ({exc})",
                hint="retrain it: mlkit train fraud --model logreg (pickled baselines are "
                "no longer loaded: unpickling can run code)",
            ) from None
        model = cls(C=params.get("C", 1.0))
        model._document = document
        model._one_order()  # its numbers are checked now, so a bad artifact fails here
        return model


@dataclass(frozen=True)
class LinearScorer:
    """One order through the logistic-regression Pipeline's fitted numbers, with numpy:
    median imputation (columns never seen in training dropped) and missing indicators,
    standard scaling, one-hot payment method (unknown: all zeros), then the linear model
    and the logistic function. Each step is the arithmetic scikit-learn runs on a dense
    row (`tests/test_fraud_booster.py` checks the figures bit for bit)."""

    kept: np.ndarray  # the numeric columns with a training median
    statistics: np.ndarray  # their medians
    indicators: np.ndarray  # the numeric columns with a missing indicator
    mean: np.ndarray
    scale: np.ndarray
    categories: tuple[str, ...]
    coef: np.ndarray  # (1, columns), as LogisticRegression keeps it
    intercept: np.ndarray
    names: tuple[str, ...]  # the Pipeline's get_feature_names_out
    dense: bool  # the Pipeline's ColumnTransformer stacks dense rows (see `of`)

    @classmethod
    def of(cls, document: dict) -> LinearScorer:
        numeric = list(document["numeric_columns"])
        if numeric != [*NUMERIC_FEATURES, "is_resale"]:
            raise MlkitError(
                f"the logistic-regression artifact was trained on other features: {numeric[:4]}...",
                hint="retrain it: mlkit train fraud --model logreg",
            )
        statistics = _array(document["imputer_statistics"])
        kept = np.flatnonzero(~np.isnan(statistics))
        indicators = np.array(sorted(document["missing_indicator_columns"]), dtype=int)
        categories = tuple(str(c) for c in document["categories"])
        mean, scale = _array(document["scaler_mean"]), _array(document["scaler_scale"])
        coef = _array(document["coef"]).reshape(1, -1)
        width = len(kept) + len(indicators)
        if len(statistics) != len(numeric) or not len(mean) == len(scale) == width:
            raise MlkitError("the logistic-regression artifact does not describe a fraud baseline")
        if coef.shape[1] != width + len(categories):
            raise MlkitError("the logistic-regression artifact does not describe a fraud baseline")
        names = (
            *(f"numeric__{numeric[i]}" for i in kept),
            *(f"numeric__missingindicator_{numeric[i]}" for i in indicators),
            *(f"categorical__{CATEGORICAL}_{c}" for c in categories),
        )
        # ColumnTransformer keeps its output dense when the share of stored values (the
        # numeric block whole, one one-hot value per row) is at least its sparse_threshold,
        # 0.3; a sparse product sums in another order, so such a model keeps the Pipeline.
        density = (width + 1) / (width + len(categories)) if categories else 1.0
        return cls(
            kept=kept,
            statistics=statistics[kept],
            indicators=indicators,
            mean=mean,
            scale=scale,
            categories=categories,
            coef=coef,
            intercept=np.array([float(document["intercept"])]),
            names=names,
            dense=density >= 0.3 and list(document["classes"]) == [0, 1],
        )

    def row(self, features: dict) -> np.ndarray | None:
        """The order's prepared row (1, columns), or None when a value is one only the
        Pipeline's own conversions decide (a text number, a missing payment method)."""
        if not self.dense or not isinstance(features.get(CATEGORICAL), str):
            return None
        values = []
        for name in (*NUMERIC_FEATURES, "is_resale"):
            if name not in features:
                return None
            value = features[name]
            if value is None:
                values.append(math.nan)
            elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
                values.append(float(value))
            else:
                return None
            if math.isinf(values[-1]):
                return None  # the Pipeline refuses infinities: let it say so
        x = np.array([values], dtype=np.float64)
        missing = np.isnan(x)
        numeric = x[:, self.kept]
        absent = missing[:, self.kept]
        numeric[absent] = np.broadcast_to(self.statistics, numeric.shape)[absent]
        block = np.hstack([numeric, missing[:, self.indicators].astype(np.float64)])
        block -= self.mean
        block /= self.scale
        method = features[CATEGORICAL]
        onehot = np.array([[1.0 if method == c else 0.0 for c in self.categories]])
        return np.hstack([block, onehot])

    def probability(self, row: np.ndarray) -> float:
        """LogisticRegression.predict_proba's positive class: the margin through the
        logistic function as scipy.special.expit computes it (libm's exp, which math.exp
        calls; numpy's own exp differs in the last bit)."""
        margin = float((row @ self.coef.T + self.intercept).reshape(-1)[0])
        try:
            return 1.0 / (1.0 + math.exp(-margin))
        except OverflowError:  # exp(-margin) beyond a double: the probability is 0
            return 0.0


LOGREG_FORMAT = "mlkit-logreg-v1"


def _floats(values) -> list[float | None]:
    """JSON numbers, NaN as null (json's NaN is not standard JSON)."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def _array(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _logreg_document(pipeline) -> dict:
    prepare, regression = pipeline.named_steps["prepare"], pipeline.named_steps["model"]
    numeric_steps = prepare.named_transformers_["numeric"]
    imputer, scaler = numeric_steps.steps[0][1], numeric_steps.steps[1][1]
    onehot = prepare.named_transformers_["categorical"].steps[1][1]
    return {
        "format": LOGREG_FORMAT,
        "numeric_columns": list(prepare.transformers_[0][2]),
        "categorical_column": CATEGORICAL,
        "imputer_statistics": _floats(imputer.statistics_),
        "missing_indicator_columns": [int(i) for i in imputer.indicator_.features_],
        "scaler_mean": _floats(scaler.mean_),
        "scaler_scale": _floats(scaler.scale_),
        "scaler_var": _floats(scaler.var_),
        "categories": [str(c) for c in onehot.categories_[0]],
        "classes": [int(c) for c in regression.classes_],
        "coef": _floats(regression.coef_[0]),
        "intercept": float(regression.intercept_[0]),
    }


def _logreg_pipeline(document: dict, *, C: float):
    """The same Pipeline `LogRegFraud.fit` builds, fitted on a few synthetic rows that give
    every step the same shape (columns kept or dropped, indicator columns, categories),
    then given the saved numbers."""
    numeric = list(document["numeric_columns"])
    if numeric != [*NUMERIC_FEATURES, "is_resale"]:
        raise MlkitError(
            f"the logistic-regression artifact was trained on other features: {numeric[:4]}...",
            hint="retrain it: mlkit train fraud --model logreg",
        )
    statistics = _array(document["imputer_statistics"])
    indicators = set(document["missing_indicator_columns"])
    categories = list(document["categories"])
    rows = max(len(categories), 2)
    synthetic = {}
    for i, column in enumerate(numeric):
        values = np.full(rows, statistics[i])  # NaN everywhere: a column dropped in training
        if i in indicators:
            values[0] = np.nan
        synthetic[column] = values
    synthetic[CATEGORICAL] = np.array(
        [categories[i % len(categories)] for i in range(rows)], dtype=object
    )
    import pandas as pd

    frame = pd.DataFrame(synthetic)
    labels = np.array([document["classes"][i % 2] for i in range(rows)])
    builder = LogRegFraud(C=C)
    fitted = builder._new_pipeline()
    with warnings.catch_warnings():  # constant and all-missing synthetic columns are meant
        warnings.simplefilter("ignore")
        fitted.fit(builder._inputs(frame), labels)
    prepare, regression = fitted.named_steps["prepare"], fitted.named_steps["model"]
    numeric_steps = prepare.named_transformers_["numeric"]
    imputer, scaler = numeric_steps.steps[0][1], numeric_steps.steps[1][1]
    onehot = prepare.named_transformers_["categorical"].steps[1][1]
    if [str(c) for c in onehot.categories_[0]] != categories or len(scaler.mean_) != len(
        document["scaler_mean"]
    ):
        raise MlkitError("the logistic-regression artifact does not describe a fraud baseline")
    imputer.statistics_ = statistics
    scaler.mean_ = _array(document["scaler_mean"])
    scaler.scale_ = _array(document["scaler_scale"])
    scaler.var_ = _array(document["scaler_var"])
    regression.classes_ = np.array(document["classes"])
    regression.coef_ = _array(document["coef"]).reshape(1, -1)
    regression.intercept_ = np.array([float(document["intercept"])])
    return fitted


def _platt(margin: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Fit p = sigmoid(a * margin + b) on held-out rows (Platt scaling)."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=100.0, max_iter=1000).fit(margin.reshape(-1, 1), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def model_class(kind: str):
    return {"xgboost": XGBoostFraud, "logreg": LogRegFraud}[kind]


def load_model(data: bytes, params: dict):
    """The model of an artifact's bytes (callers pass bytes whose sha256 they checked)."""
    return model_class(params["model"]).load(data, params)
