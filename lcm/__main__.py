from lcm.cli import cli_main

cli_main()
