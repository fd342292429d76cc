# Shared by bench/capture.sh, bench/h2c.sh and bench/neighbours.sh (sourced, from the repository
# root): the parts of a throwaway nginx config that keep nginx out of its system paths.
#   nginx_temp_paths DIR   prints the http-level *_temp_path lines, all under DIR

nginx_temp_paths() {
    printf '  client_body_temp_path %s/body;\n' "$1"
    local t
    for t in proxy fastcgi uwsgi scgi; do
        printf '  %s_temp_path %s/%s;\n' "$t" "$1" "$t"
    done
}
