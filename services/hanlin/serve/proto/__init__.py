"""The gRPC contract (`serve.proto`) and its generated Python stubs."""
