from suites.mutation.runner import main

raise SystemExit(main())
