"""Design-based inference for survey samples, with R survey's conventions: a design (strata, PSUs, fpc), its
estimates with linearization SEs, calibration with SEs from the calibration residuals, and replicate weights.

    design     SurveyDesign: svydesign's reading of weights, ids, strata, fpc; total, mean, ratio, by=, calibrate
    linearization  the stratified with-replacement variance, lonely PSUs, the calibration residuals
    statistics     the estimators, their influence values and design effects, SurveyEstimate
    replicates     jk1, jkn, Rao-Wu bootstrap, BRR / Fay; their variance; recalibration of every replicate
"""

from .design import SurveyDesign
from .replicates import ReplicateDesign
from .statistics import SurveyEstimate

__all__ = ["ReplicateDesign", "SurveyDesign", "SurveyEstimate"]
