# /etc/profile.d/ruflo-shell-summary.sh: the summary line for login shells that sshd did not start
# itself (the shell mosh-server starts, `kubectl exec -it ... -- bash -l`). For shells sshd starts,
# /etc/ssh/sshrc has already printed it.
case "$(cat "/proc/$PPID/comm" 2>/dev/null)" in
    sshd*) ;;
    *) /usr/local/bin/ruflo-shell-summary ;;
esac
