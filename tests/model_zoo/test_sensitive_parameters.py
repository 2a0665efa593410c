"""One list of the parameters that train in the "sensitive" group, shared by every SSM layer and the trainer."""

from __future__ import annotations

import model_zoo.ssm as ssm
from model_zoo.ssm import _legs, centaurus, liquid_s4, lssl
from model_zoo.ssm.sensitive import SENSITIVE_PARAMETERS


def test_one_definition_everywhere():
    for module in (ssm, centaurus, _legs, lssl, liquid_s4):
        assert module.SENSITIVE_PARAMETERS is SENSITIVE_PARAMETERS


def test_it_names_the_dynamics_of_every_layer_and_nothing_else():
    layers = {
        "centaurus": ssm.SSMLayer(4, 4, 3, "neck", blocks=2),
        "lssl": ssm.LSSLLayer(4, 4, 3, learn_a=True),
        "liquid_s4": ssm.LiquidS4Layer(4, 4, 3, learn_a=True),
    }
    dynamics = {"centaurus": {"a_real", "a_imag", "log_dt"}, "lssl": {"log_dt", "A"}, "liquid_s4": {"log_dt", "A"}}
    for kind, layer in layers.items():
        leaves = {name.rsplit(".", 1)[-1] for name, _ in layer.named_parameters()}
        assert leaves & set(SENSITIVE_PARAMETERS) == dynamics[kind], kind
