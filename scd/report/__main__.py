from scd.report.cli import main

main()
