from edge_sent.cli import main

main()
