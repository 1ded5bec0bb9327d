"""Steering the language a model writes in through transcoder features, on the original model.

[`steer`][workbench.clt.steering.steer] holds an intervention (one language's features off,
another's on), the hooks that apply it, its matched control and the measure of the continuation;
[`plan`][workbench.clt.steering.plan] what it adds where; [`identity`][workbench.clt.steering.identity]
one language pair's sweep over strengths with the identity features' cards.
"""
