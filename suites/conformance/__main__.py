from suites.conformance.cli import main

raise SystemExit(main())
