# Shared by the experiment scripts (source it after setting AIRTUNE).
# run_config CONFIG RUN_DIR [key=value ...]: run CONFIG (with the overrides) into RUN_DIR; resume
# it if an earlier run was interrupted; skip it if it already finished (summary.json present).
run_config() {
  local cfg=$1 dir=$2
  shift 2
  [ -f "$dir/summary.json" ] && return 0
  if [ -d "$dir" ]; then "$AIRTUNE" run --quiet --resume "$dir"
  else "$AIRTUNE" run --quiet "$cfg" "$@" --out "$dir"; fi
}
