"""envelope_cli: the `envelope` command line, the operators' way into both planes.

This is the only package allowed to import both `controlplane` and
`dataplane`, and nothing imports it (import-linter checks both). It is the
convenience layer: the one place that builds boto3 clients from options
(`--kms aws`, `--region`, `--profile`, `--endpoint-url`). It must never print
or store key material, and never leave partial plaintext behind (`get -o`).
"""
