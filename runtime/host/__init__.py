"""`auto` on the machine that runs the bundle: the probe (`probe`, `timing`), its cache (`cache`), the CPU the code
runs on (`cpu`), the engines among the candidates (`candidates`) and the verdict in words (`verdict`)."""
