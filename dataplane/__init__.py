"""A local data plane for the embedded AWS (moto): the load balancers answer and the instances run their app.

moto stores what the deployment creates but runs nothing: no app on the instances, nothing on the ALB's
DNS name, and every registered target `healthy` at once. This package puts an AWS endpoint in front of
moto (`python -m dataplane --moto URL`) that forwards every call unchanged, runs each running instance's
app as a local `node` process, serves each load balancer listener on a local port with ELB's routing,
health check and draining rules, and answers DescribeTargetHealth from its own checks.

Not part of the product (pyproject ships only the application's packages): the worker, the activities
and the command line never import it; a test checks that. Demo, tests and benchmarks start it the same
way, as a process. docs/dataplane.md describes what it models and what it does not.
"""
