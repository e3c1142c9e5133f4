"""GDRegressor honours scikit-learn's estimator contract."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from gradfit import GDRegressor


@parametrize_with_checks([GDRegressor(), GDRegressor(engine="pass"), GDRegressor(batch_size=16, random_state=0)])
def test_sklearn_contract(estimator, check):
    check(estimator)
