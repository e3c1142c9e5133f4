"""GDRegressor and GDRegressorCV honour scikit-learn's estimator contract."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from gradfit import GDRegressor, GDRegressorCV


@parametrize_with_checks([
    GDRegressor(), GDRegressor(engine="pass"), GDRegressor(batch_size=16, random_state=0),
    GDRegressorCV(), GDRegressorCV(penalty="l2", cv=3), GDRegressorCV(penalty="l1", l1_ratio=[1.0], alphas=10),
])
def test_sklearn_contract(estimator, check):
    check(estimator)
