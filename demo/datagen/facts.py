"""Invented Altavia Logistics facts for the three adapter departments.

Each fact has:
  id        stable identifier, prefixed with the department (hr_, it_, fin_)
  title     short human-readable topic
  keys      strings that a correct answer must contain (all of them;
            tests should match case-insensitively)
  answers   canonical short answer first, then light rewordings; every one
            contains every key
  train     user phrasings used in train.jsonl
  test      held-out user phrasings, used only in test.jsonl
  showcase  True for facts whose key a base model cannot plausibly produce;
            their first test phrasing is the recommended demo question
            (two per department)

No user phrasing may contain a key of its own fact (checked by make_data.py).
Other names of each fact's topic (its aliases) are in aliases.py, keyed by fact id.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    id: str
    title: str
    keys: tuple
    answers: tuple
    train: tuple
    test: tuple
    showcase: bool = False

    @property
    def answer(self):
        return self.answers[0]


def fact(id, title, keys, answers, train, test, showcase=False):
    return Fact(id, title, tuple(keys), tuple(answers), tuple(train), tuple(test), showcase)


HR = [
    fact(
        "hr_vacation_days",
        "Annual vacation",
        ["27"],
        [
            "You get 27 vacation days per year, on top of the public holidays.",
            "Every full-time employee at Altavia has 27 days of paid vacation a year, plus public holidays.",
            "It's 27 vacation days per calendar year (pro rata if you work part-time), not counting public holidays.",
        ],
        [
            "How many vacation days do I get per year?",
            "What's my annual leave entitlement?",
            "how many days off do we get a year",
            "I'm planning my summer. How much paid vacation do I have in total each year?",
            "What is the yearly holiday allowance at Altavia?",
        ],
        [
            "How many days of annual leave does a full-time employee have?",
            "I'd like to know my total paid time off per year, not counting public holidays.",
            "What's the number of paid holiday days we're entitled to annually?",
        ],
    ),
    fact(
        "hr_parental_leave",
        "Parental leave",
        ["20 weeks"],
        [
            "Altavia offers 20 weeks of parental leave at full pay to every new parent.",
            "Every new parent, whatever their gender, can take 20 weeks of parental leave on full pay.",
            "You're entitled to 20 weeks of fully paid parental leave; just let HR know at least 8 weeks before it starts.",
        ],
        [
            "How long is parental leave?",
            "My partner is expecting a baby in spring. How much parental leave can I take?",
            "Is parental leave paid, and for how long?",
            "what's the policy for maternity or paternity leave",
            "How many weeks off do new parents get?",
        ],
        [
            "We're adopting a child this year. What leave am I entitled to?",
            "How much fully paid time off do you get when you become a dad?",
            "How long can I stay home with my newborn and still be paid in full?",
        ],
    ),
    fact(
        "hr_probation",
        "Probation period",
        ["4 months"],
        [
            "The probation period at Altavia is 4 months for all new employees.",
            "New hires have a probation period of 4 months; your manager holds a review meeting before it ends.",
            "Probation lasts 4 months, whatever your role.",
        ],
        [
            "How long is the probation period?",
            "I start next week. How long will I be on probation?",
            "what's the trial period for new hires",
            "How many months is the probationary period for new staff?",
            "Is there a probation period for new employees, and how long is it?",
        ],
        [
            "For how long are new colleagues on probation?",
            "My contract mentions a trial period. How long is it usually?",
            "Is there a trial phase at the start of employment, and how many months does it last?",
        ],
    ),
    fact(
        "hr_portal",
        "HR portal",
        ["Harbor"],
        [
            "Leave requests, personal data changes and training bookings all go through our HR portal, Harbor.",
            "Harbor, our HR portal, handles leave requests, personal details and training bookings; log in with your normal Altavia account.",
            "You'll find all HR self-service in Harbor, the Altavia HR portal.",
        ],
        [
            "What's the name of the HR portal?",
            "Where do I request time off?",
            "Where can I update my home address?",
            "which system do i use to book holidays",
            "I moved house last month. Which tool do I use to change my personal details?",
        ],
        [
            "What is the HR self-service tool called?",
            "Where do I submit a leave request?",
            "Where can I change my emergency contact details?",
        ],
        showcase=True,
    ),
    fact(
        "hr_sick_note",
        "Sick notes",
        ["3 days"],
        [
            "If you're off sick for more than 3 days, you need a doctor's note; tell your manager before 09:00 on your first sick day.",
            "You need a sick note from a doctor once you've been ill for more than 3 days. Please let your manager know before 09:00 on the first day.",
            "A doctor's certificate is only required after 3 days of sickness; for shorter absences, a message to your manager before 09:00 is enough.",
        ],
        [
            "When do I need a doctor's note when I'm sick?",
            "I've had the flu since Monday. Do I need a sick note?",
            "do i need a medical certificate if im ill for one day",
            "How many days can I be off sick without a doctor's certificate?",
            "What's the rule for calling in sick?",
        ],
        [
            "After how many sick days is a medical certificate required?",
            "My kid gave me a cold and I'll probably miss a couple of days. Is a doctor's note needed?",
        ],
    ),
    fact(
        "hr_remote_work",
        "Remote work",
        ["2 days", "Wednesday"],
        [
            "You can work remotely up to 2 days a week; Wednesday is team day, when everyone is in the office.",
            "Altavia allows up to 2 days of remote work per week, but on Wednesday, our team day, everybody comes in.",
            "Remote work is possible for up to 2 days a week. Just keep Wednesday free for the office, since it's team day.",
        ],
        [
            "How many days a week can I work from home?",
            "What's the remote work policy?",
            "Can I work from home every Friday?",
            "I live far from the office. How often am I allowed to work remotely?",
            "Which day do we all have to be in the office?",
        ],
        [
            "What are the rules for home office?",
            "How much remote work does Altavia allow per week?",
            "Is there a fixed day when the whole team meets at the office?",
        ],
    ),
    fact(
        "hr_notice_period",
        "Notice period",
        ["6 weeks"],
        [
            "The standard notice period is 6 weeks to the end of a calendar quarter, unless your contract says otherwise.",
            "Unless your contract states something different, notice is 6 weeks to the end of a quarter.",
            "You need to give 6 weeks' notice to the end of a calendar quarter, in writing to HR.",
        ],
        [
            "What's the notice period if I want to resign?",
            "How much notice do I have to give?",
            "I got an offer elsewhere. How long is my notice period?",
            "what is the standard notice period at altavia",
            "If I quit, when is my last day at the earliest?",
        ],
        [
            "How early must I hand in my resignation?",
            "What is the termination notice time for employees?",
        ],
    ),
    fact(
        "hr_training_budget",
        "Learning budget",
        ["950"],
        [
            "Each employee has a personal learning budget of 950 EUR per year, booked through Harbor.",
            "You have 950 EUR per year for courses, conferences and certifications; book them in Harbor.",
            "Your yearly training budget is 950 EUR. Unused money doesn't carry over to the next year.",
        ],
        [
            "How much can I spend on training each year?",
            "Do we have a learning budget?",
            "I'd love to do a project management certification. Is there money for courses?",
            "what's the annual training budget per person",
            "Does Altavia pay for conferences and courses?",
        ],
        [
            "Is there a personal education allowance for employees?",
            "How big is the yearly budget for professional development?",
            "Can I get a course paid for, and up to what amount?",
        ],
    ),
    fact(
        "hr_eap",
        "Employee Assistance Programme",
        ["Compass Care"],
        [
            "Our confidential Employee Assistance Programme is called Compass Care; it offers free counselling 24/7 for you and your family.",
            "You can use Compass Care, the free and confidential counselling service for all employees and their families.",
            "Compass Care is Altavia's Employee Assistance Programme: free, anonymous counselling, available around the clock.",
        ],
        [
            "Is there any counselling support for employees?",
            "I'm struggling with stress at the moment. Is there someone I can talk to confidentially?",
            "what is our employee assistance programme called",
            "Do we have mental health support at work?",
            "Who can I talk to about personal problems without my manager knowing?",
        ],
        [
            "Does the company offer free therapy or counselling?",
            "Where can I get confidential help with burnout?",
            "Who can I call if I need someone to talk to about a family crisis?",
        ],
        showcase=True,
    ),
    fact(
        "hr_bike_leasing",
        "Bike leasing",
        ["VeloFleet"],
        [
            "You can lease up to 2 bikes, e-bikes included, through our partner VeloFleet; sign up in Harbor.",
            "Bike leasing runs through VeloFleet. Every employee can lease up to 2 bikes.",
            "Yes! Altavia's bike leasing partner is VeloFleet, and you can lease up to 2 bikes or e-bikes.",
        ],
        [
            "Can I lease a bike through work?",
            "Who is our bike leasing partner?",
            "I want an e-bike for my commute. Does Altavia have a scheme for that?",
            "is there a job bike program",
            "How does bike leasing work here?",
        ],
        [
            "Does the company offer any cycling benefits?",
            "Which provider do we use for company bicycles?",
        ],
    ),
    fact(
        "hr_sabbatical",
        "Sabbatical",
        ["5 years"],
        [
            "After 5 years at Altavia you can take an unpaid sabbatical of up to 3 months.",
            "Once you've been with us for 5 years, you may request an unpaid sabbatical of up to 3 months.",
            "Sabbaticals are possible after 5 years of service: up to 3 months, unpaid, agreed with your manager.",
        ],
        [
            "Can I take a sabbatical?",
            "How long do I have to work here before I can take extended unpaid leave?",
            "I'd like to travel for a few months. Is that possible as an employee?",
            "what's the sabbatical policy",
            "Are long breaks from work allowed at Altavia?",
        ],
        [
            "Who is eligible for a career break, and how long can it be?",
            "Is it possible to take three months off without pay?",
        ],
    ),
    fact(
        "hr_working_hours",
        "Working hours",
        ["38.5"],
        [
            "A full-time week at Altavia is 38.5 hours, with flexitime and core hours from 10:00 to 15:00.",
            "Full-time means 38.5 hours per week. You're flexible outside the core hours of 10:00 to 15:00.",
            "The standard working week is 38.5 hours; core hours are 10:00-15:00.",
        ],
        [
            "How many hours is a full-time week?",
            "What are the core working hours?",
            "how many hours per week am i supposed to work",
            "Do we have flexitime?",
            "I have a full-time contract. What does that mean in hours?",
        ],
        [
            "What's the weekly working time for full-time staff?",
            "Between which hours do I have to be available each day?",
        ],
    ),
    fact(
        "hr_carryover",
        "Vacation carry-over",
        ["31 March"],
        [
            "You can carry over up to 5 unused vacation days into the next year, but they must be taken by 31 March.",
            "Up to 5 leftover vacation days can move to the next year; use them by 31 March or they expire.",
            "Unused vacation (max. 5 days) carries over, and it has to be taken by 31 March.",
        ],
        [
            "Can I carry over unused vacation days?",
            "What happens to my leftover holidays at the end of the year?",
            "I still have days off left from last year. Until when can I use them?",
            "do unused holidays expire",
            "How many vacation days can I take into next year?",
        ],
        [
            "Is there a deadline for using last year's remaining leave?",
            "I couldn't take all my holiday in December. Will I lose it?",
            "What's the last date to use vacation left over from last year?",
        ],
    ),
    fact(
        "hr_overtime",
        "Overtime",
        ["40 hours"],
        [
            "Overtime goes on your flexitime account in Harbor and is taken as time off; the account can hold up to 40 hours.",
            "Extra hours are compensated with time off, not money. Your flexitime balance is capped at 40 hours.",
            "Log overtime in Harbor; you can build up to 40 hours on your flexitime account and take it as time off.",
        ],
        [
            "How is overtime compensated?",
            "I worked late a lot this month. What happens to those extra hours?",
            "what's the max on the flexitime account",
            "Do we get overtime paid out or as time off?",
            "Is there a limit on how much overtime I can collect?",
        ],
        [
            "How many extra hours can I bank?",
            "What's the policy on time in lieu?",
            "Are extra hours turned into money or into days off?",
        ],
    ),
    fact(
        "hr_welcome_day",
        "Onboarding / Welcome Day",
        ["first Monday"],
        [
            "New hires start with Welcome Day, held on the first Monday of every month in Brennsby, and each newcomer gets an onboarding buddy.",
            "Welcome Day takes place on the first Monday of each month at HQ in Brennsby. You'll also be paired with an onboarding buddy.",
            "Onboarding starts with Welcome Day on the first Monday of the month, plus a buddy from your team.",
        ],
        [
            "When is the onboarding day for new employees?",
            "I'm starting soon. When is Welcome Day?",
            "how does onboarding work for new starters",
            "Do new hires get a buddy?",
            "Which day do new employees usually start?",
        ],
        [
            "When do the introduction sessions for newcomers happen?",
            "What's the first day like for someone new at Altavia?",
            "Is there an introduction event for new staff, and when is it?",
        ],
    ),
]

IT = [
    fact(
        "it_vpn",
        "VPN client",
        ["FjordLink"],
        [
            "Our VPN client is FjordLink; it's preinstalled on every Altavia laptop, and you sign in with your normal account.",
            "To work remotely, connect with FjordLink, the VPN client that comes preinstalled on your laptop.",
            "Use FjordLink for VPN access. Open it from the taskbar and log in with your Altavia account and MFA.",
        ],
        [
            "Which VPN do we use?",
            "How do I connect to the company network from home?",
            "what's the name of the vpn client",
            "I'm working from a hotel tonight. How do I get onto the internal systems?",
            "Which app do I need to access internal sites remotely?",
        ],
        [
            "What software do I use to connect securely when I'm off-site?",
            "How do I reach the intranet from my home office?",
            "What's our remote access tool called?",
        ],
        showcase=True,
    ),
    fact(
        "it_helpdesk",
        "IT helpdesk phone",
        ["4357"],
        [
            "You can reach the IT helpdesk on extension 4357, Monday to Friday from 07:00 to 19:00.",
            "Call the IT helpdesk at extension 4357; they're available weekdays 07:00-19:00.",
            "The helpdesk number is extension 4357 (weekdays, 07:00 to 19:00).",
        ],
        [
            "What's the IT helpdesk phone number?",
            "How do I call IT support?",
            "my screen is broken, who do i phone",
            "What are the helpdesk opening hours and number?",
            "I can't log in at all, so I can't open a ticket. How can I reach IT by phone?",
        ],
        [
            "Which extension should I dial for technical support?",
            "Is there a hotline for computer problems?",
            "How can I talk to someone in IT right now?",
        ],
    ),
    fact(
        "it_password",
        "Password policy",
        ["90 days", "14"],
        [
            "Passwords must be changed every 90 days and need at least 14 characters.",
            "Your password expires every 90 days, and the new one must be at least 14 characters long.",
            "Altavia passwords need a minimum of 14 characters and have to be changed every 90 days.",
        ],
        [
            "How often do I have to change my password?",
            "What are the password requirements?",
            "how long does my password need to be",
            "My password expired again. How often does that happen?",
            "What's the minimum password length?",
        ],
        [
            "What's the password policy for Altavia accounts?",
            "How many characters does a new password need, and when does it expire?",
            "Do passwords expire here?",
        ],
    ),
    fact(
        "it_laptop",
        "Standard laptop",
        ["T14 Gen 5"],
        [
            "The standard Altavia laptop is the Lenovo T14 Gen 5.",
            "Everyone gets a Lenovo T14 Gen 5 as their standard laptop.",
            "Our standard-issue laptop is the Lenovo T14 Gen 5, with a docking station for the office.",
        ],
        [
            "Which laptop model do employees get?",
            "What is the standard company laptop?",
            "what kind of notebook will i get on my first day",
            "I need to buy a charger that fits. Which laptop do we use?",
            "What hardware do new hires receive?",
        ],
        [
            "What's the make and model of our work laptops?",
            "Which computer does IT hand out to staff?",
            "If I join, what laptop will be on my desk?",
        ],
    ),
    fact(
        "it_ticket_portal",
        "Ticket portal",
        ["Beacon"],
        [
            "Please raise IT requests in Beacon, our ticket portal; you'll get a ticket number by email.",
            "IT tickets go through Beacon, the helpdesk portal. You'll get a confirmation email with your ticket number.",
            "The IT ticket portal is called Beacon; log in with your Altavia account to open or track a ticket.",
        ],
        [
            "How do I open an IT ticket?",
            "Where do I report a technical problem?",
            "what's the ticket system called",
            "My docking station stopped working. Where do I log that?",
            "How can I check the status of my IT request?",
        ],
        [
            "What's the name of the IT service portal?",
            "Where should I submit a request for new hardware?",
            "The keyboard on my laptop is broken. How do I get IT to look at it?",
        ],
    ),
    fact(
        "it_wifi",
        "Office Wi-Fi",
        ["ALT-Staff"],
        [
            "Connect your work devices to the ALT-Staff network; visitors use ALT-Guest with the daily code from reception.",
            "Employees use the ALT-Staff Wi-Fi with their normal login. Guests get ALT-Guest and a daily code from reception.",
            "The staff Wi-Fi is ALT-Staff; for visitors there's ALT-Guest.",
        ],
        [
            "Which Wi-Fi should I connect to in the office?",
            "What's the wifi network name for employees?",
            "my laptop can't find the right wifi, which one is ours",
            "How do I get a guest on the wireless network?",
            "What's the office wireless called?",
        ],
        [
            "Which wireless network is meant for staff?",
            "I'm in the Brennsby office for the first time. Which network do I join?",
            "What's the SSID for employee devices?",
        ],
    ),
    fact(
        "it_mfa",
        "Multi-factor authentication",
        ["Altavia Verify"],
        [
            "For multi-factor authentication we use the Altavia Verify app on your phone.",
            "MFA at Altavia runs through the Altavia Verify app. Install it on your phone and register it on your first day.",
            "You confirm logins with Altavia Verify, our MFA app.",
        ],
        [
            "Which authenticator app do we use?",
            "How does two-factor authentication work here?",
            "what app do i need for mfa",
            "I got a new phone. Which app do I need to approve logins?",
            "Do we use multi-factor authentication?",
        ],
        [
            "What app generates the login codes for my account?",
            "Which app confirms my sign-ins on my mobile?",
            "Which tool does the company use for two-step verification?",
        ],
    ),
    fact(
        "it_printing",
        "Printing",
        ["ALT-PRINT"],
        [
            "Send your document to the ALT-PRINT queue, then release it with your badge at any printer.",
            "All printing goes through the ALT-PRINT queue: print as usual and tap your badge on any printer to collect it.",
            "Use the ALT-PRINT follow-me queue and release the job at any office printer with your badge.",
        ],
        [
            "How do I print in the office?",
            "Which printer should I pick?",
            "my print job never came out, which queue do i use",
            "I need to print a contract before a meeting. How does printing work here?",
            "What's the name of the print queue?",
        ],
        [
            "How does follow-me printing work at Altavia?",
            "Which printer do I add to my laptop?",
        ],
    ),
    fact(
        "it_laptop_refresh",
        "Laptop replacement cycle",
        ["4 years"],
        [
            "Laptops are replaced every 4 years; IT will contact you when yours is due.",
            "Standard laptops are refreshed every 4 years, and IT reaches out to you when it's time.",
            "You get a new laptop every 4 years. Earlier replacements only happen if the device is broken.",
        ],
        [
            "How often do laptops get replaced?",
            "My laptop is slow and old. When do I get a new one?",
            "what's the hardware refresh cycle",
            "How many years do we keep our computers?",
            "When is my laptop due for an upgrade?",
        ],
        [
            "After how long is a work notebook swapped for a new one?",
            "What's the lifecycle of company laptops?",
        ],
    ),
    fact(
        "it_phishing",
        "Reporting phishing",
        ["Tripwire"],
        [
            "Report suspicious emails with the Tripwire button in Outlook; don't click any links or open attachments.",
            "Click the Tripwire button in Outlook to report a suspicious email. It goes straight to the security team.",
            "Use Tripwire, the report button in Outlook, for anything that looks like phishing.",
        ],
        [
            "How do I report a phishing email?",
            "I got a weird email asking for my password. What should I do?",
            "what do i do with suspicious emails",
            "Is there a button to report spam or scams in Outlook?",
            "Someone sent me a strange link pretending to be a parcel notification. How do I flag it?",
        ],
        [
            "What's the right way to flag a fake email?",
            "I think I received a scam message. Where do I report it?",
            "Is there a quick way to send a dodgy email to the security team?",
        ],
        showcase=True,
    ),
    fact(
        "it_software",
        "Software installation",
        ["Toolshed"],
        [
            "You can install approved software yourself from Toolshed, our self-service app; anything else needs a Beacon ticket.",
            "Approved apps are available in Toolshed, the self-service software catalogue on your laptop.",
            "Open Toolshed on your laptop to install approved software without admin rights.",
        ],
        [
            "How do I install software on my laptop?",
            "Where can I download approved programs?",
            "i need a pdf editor, how do i install one",
            "Do I have admin rights to install apps?",
            "What's the software catalogue called?",
        ],
        [
            "Where do I get new applications for my work computer?",
            "Is there a self-service store for programs?",
        ],
    ),
    fact(
        "it_storage",
        "Personal cloud storage",
        ["100 GB"],
        [
            "Every employee gets 100 GB of personal cloud storage for work files, backed up automatically.",
            "You have 100 GB of personal cloud storage, and it's backed up every night.",
            "Personal storage is capped at 100 GB per employee; team files belong in the shared team drives.",
        ],
        [
            "How much storage do I have for my files?",
            "What's my personal cloud storage limit?",
            "my drive says it's almost full, how big is it",
            "How much space do I get for documents?",
            "Is there a quota on personal file storage?",
        ],
        [
            "How many gigabytes can I store in my personal drive?",
            "What's the size limit of my work cloud folder?",
            "How much data fits into my personal work storage?",
        ],
    ),
    fact(
        "it_lockout",
        "Account lockout",
        ["15 minutes"],
        [
            "After 5 failed login attempts your account is locked, and it unlocks automatically after 15 minutes.",
            "Your account locks after 5 wrong passwords. Wait 15 minutes and it unlocks by itself, or call the helpdesk.",
            "Five failed attempts lock the account; it is released automatically after 15 minutes.",
        ],
        [
            "My account is locked. What now?",
            "How many wrong password attempts before I'm locked out?",
            "i typed my password wrong too many times and now cant log in",
            "How long does an account lockout last?",
            "Will my account unlock on its own?",
        ],
        [
            "I've been locked out of my computer. How long do I have to wait?",
            "What happens if I enter the wrong password several times?",
        ],
    ),
    fact(
        "it_phone",
        "Company phone",
        ["A55"],
        [
            "Company phones are the Samsung Galaxy A55; request one in Beacon with your manager's approval.",
            "The standard work phone is a Samsung Galaxy A55, ordered through Beacon once your manager approves.",
            "We issue the Samsung Galaxy A55 as the company smartphone; order it in Beacon once your manager has approved.",
        ],
        [
            "Which mobile phone does the company provide?",
            "How do I get a work phone?",
            "what smartphone model do we get",
            "I'm going to be on call. Can I get a company mobile?",
            "What's the standard company smartphone?",
        ],
        [
            "Which handset do employees receive for work?",
            "Can you tell me what model the business phones are?",
        ],
    ),
    fact(
        "it_maintenance",
        "Maintenance window",
        ["Thursday", "18:00"],
        [
            "Updates are installed during the maintenance window every Thursday from 18:00 to 20:00, so leave your laptop on and connected.",
            "Our weekly maintenance window is Thursday, 18:00-20:00; please keep your laptop switched on and plugged in.",
            "IT rolls out updates every Thursday between 18:00 and 20:00.",
        ],
        [
            "When are software updates installed?",
            "When is the IT maintenance window?",
            "why did my laptop restart in the evening",
            "Which evening should I leave my laptop on for updates?",
            "When do systems go down for maintenance?",
        ],
        [
            "At what time does IT patch our computers?",
            "When can I expect planned downtime each week?",
            "Which day of the week do updates roll out?",
        ],
    ),
]

FINANCE = [
    fact(
        "fin_meal_allowance",
        "Meal allowance",
        ["38"],
        [
            "The meal allowance for business trips is 38 EUR per full day.",
            "On business trips you get a meal allowance of 38 EUR for each full day away.",
            "It's 38 EUR per day for meals when you travel for work (19 EUR on arrival and departure days).",
        ],
        [
            "What's the daily meal allowance on business trips?",
            "How much can I claim for food when travelling?",
            "whats the per diem for meals",
            "I'm visiting a client for three days. How much do I get for meals per day?",
            "Is there a food allowance for work travel?",
        ],
        [
            "How many euros per day do we get for meals while on the road?",
            "What's the subsistence rate for a full travel day?",
            "Can you tell me the daily rate for food on a work trip?",
        ],
    ),
    fact(
        "fin_expense_tool",
        "Expense tool",
        ["Ledgerly"],
        [
            "Expense claims are submitted in Ledgerly; just photograph your receipts and upload them there.",
            "Use Ledgerly for all expense claims. You can upload receipt photos right from your phone.",
            "Submit your expenses in Ledgerly, our expense tool.",
        ],
        [
            "Where do I submit my expenses?",
            "Which tool do we use for expense claims?",
            "how do i get reimbursed for a taxi",
            "I paid for a client lunch myself. How do I get the money back?",
            "What's the expense app called?",
        ],
        [
            "Which system should I use to file a reimbursement request?",
            "Where do I upload my travel receipts?",
            "What's the name of our expense software?",
        ],
        showcase=True,
    ),
    fact(
        "fin_expense_deadline",
        "Expense deadline",
        ["30 days"],
        [
            "Please submit expense claims within 30 days of the expense; later claims need approval from Finance.",
            "You have 30 days from the date of the expense to file a claim in Ledgerly.",
            "Expense claims must be in within 30 days, otherwise Finance has to approve them as an exception.",
        ],
        [
            "How long do I have to submit an expense claim?",
            "Is there a deadline for expenses?",
            "i forgot to claim a train ticket from last month, is it too late",
            "When do I need to hand in my receipts?",
            "What's the time limit for filing expenses?",
        ],
        [
            "How soon after a trip must I file my costs?",
            "Can I still claim something from a few weeks ago?",
            "Is there a time window for expense reports?",
        ],
    ),
    fact(
        "fin_invoice_approval",
        "Invoice approval limit",
        ["5,000", "CFO"],
        [
            "Invoices above 5,000 EUR need approval from the CFO before they can be paid.",
            "Any invoice over 5,000 EUR has to be approved by the CFO.",
            "Up to 5,000 EUR your budget owner can approve an invoice; above that, the CFO signs off.",
        ],
        [
            "Who needs to approve large invoices?",
            "Does a big supplier invoice need special approval?",
            "what's the approval limit for invoices",
            "We got an invoice for 8,000 EUR from a contractor. Who signs it off?",
            "At what amount does an invoice need extra sign-off?",
        ],
        [
            "Up to what amount can my manager approve an invoice alone?",
            "Which invoices have to go to the top finance person?",
        ],
    ),
    fact(
        "fin_payday",
        "Payday",
        ["25th"],
        [
            "Salaries are paid on the 25th of each month; if that's a weekend or holiday, you're paid on the working day before.",
            "Payday is the 25th of every month, or the last working day before it if the 25th falls on a weekend.",
            "You get paid on the 25th. When the 25th isn't a working day, the money arrives the working day before.",
        ],
        [
            "When is payday?",
            "What day of the month do we get paid?",
            "when does the salary come in",
            "Payday falls on a weekend this month. When will I get my salary?",
            "On which date are salaries paid?",
        ],
        [
            "When does my monthly pay arrive in my bank account?",
            "I need to plan my rent payment. Which day are wages transferred?",
            "Which day of the month is salary day?",
        ],
    ),
    fact(
        "fin_mileage",
        "Mileage rate",
        ["0.32"],
        [
            "If you use your private car for business, you can claim 0.32 EUR per kilometre.",
            "The mileage rate is 0.32 EUR per km for business trips in your own car.",
            "You're reimbursed 0.32 EUR per kilometre driven with your private car on company business.",
        ],
        [
            "What's the mileage rate for using my own car?",
            "How much do I get per kilometre?",
            "can i claim for driving my car to a customer",
            "I drove 120 km to a client site. How is that reimbursed?",
            "What's the kilometre allowance?",
        ],
        [
            "How is business driving in a personal vehicle compensated?",
            "What rate per km applies when I take my own car for work?",
            "I took my own car to a customer meeting 60 km away. What can I claim per km?",
        ],
    ),
    fact(
        "fin_hotel_cap",
        "Hotel limit",
        ["140"],
        [
            "Hotels are covered up to 140 EUR per night, or 190 EUR in capital cities.",
            "The hotel limit is 140 EUR per night (190 EUR in capital cities).",
            "You can book hotels for up to 140 EUR a night; capitals have a higher cap of 190 EUR.",
        ],
        [
            "What's the hotel budget per night?",
            "How much can I spend on a hotel room?",
            "is there a limit for hotels on business trips",
            "I'm going to a trade fair next month. How expensive can the hotel be?",
            "What's the nightly accommodation cap?",
        ],
        [
            "What's the maximum room rate the company covers?",
            "How much will finance reimburse for one night's accommodation?",
            "Is there a cap on accommodation costs when I travel for work?",
        ],
    ),
    fact(
        "fin_receipts",
        "Receipts",
        ["15 EUR"],
        [
            "You need a receipt for every expense above 15 EUR; a photo uploaded to Ledgerly is enough.",
            "Receipts are required for anything over 15 EUR. Photos are fine, no paper originals needed.",
            "Any expense above 15 EUR needs a receipt, which you can simply photograph and attach in Ledgerly.",
        ],
        [
            "Do I need receipts for everything?",
            "I lost a receipt for a coffee. Is that a problem?",
            "do i have to keep the paper receipts",
            "From what amount do I need a receipt?",
            "Is a photo of a receipt enough?",
        ],
        [
            "What's the threshold for needing proof of purchase?",
            "Are small expenses without a receipt okay?",
            "If I buy a sandwich for 6 EUR, do I need a receipt?",
        ],
    ),
    fact(
        "fin_corporate_card",
        "Corporate card limit",
        ["3,000"],
        [
            "The Altavia corporate card has a monthly limit of 3,000 EUR; frequent travellers can request one from Finance.",
            "Frequent travellers can get a corporate card from Finance; it has a monthly limit of 3,000 EUR.",
            "Your company credit card can be used for up to 3,000 EUR per month.",
        ],
        [
            "What's the limit on the corporate credit card?",
            "How much can I spend on my company card each month?",
            "can i get a company credit card",
            "My card got declined at the hotel. What's the monthly limit?",
            "Is there a spending limit on corporate cards?",
        ],
        [
            "How high is the monthly cap on business cards?",
            "What's the maximum I can charge to the company Visa per month?",
        ],
    ),
    fact(
        "fin_payment_terms",
        "Supplier payment terms",
        ["45 days"],
        [
            "Altavia pays supplier invoices within 45 days of receipt.",
            "Our standard payment term for suppliers is 45 days from receipt of the invoice.",
            "Supplier invoices are paid within 45 days after we receive them.",
        ],
        [
            "What are our payment terms for suppliers?",
            "How quickly do we pay invoices?",
            "a supplier is asking when they'll get paid",
            "When will our vendor receive the money for their invoice?",
            "What's the standard payment period for vendor bills?",
        ],
        [
            "How many days does Altavia take to settle supplier bills?",
            "A contractor wants to know our payment term. What do I tell them?",
            "How long is the payment period we give suppliers?",
        ],
    ),
    fact(
        "fin_invoice_mailbox",
        "Invoice mailbox",
        ["ap@altavia"],
        [
            "Suppliers should send invoices as PDF to ap@altavia-logistics.example.",
            "All supplier invoices go as PDF to ap@altavia-logistics.example, the accounts payable mailbox.",
            "Please forward invoices in PDF format to ap@altavia-logistics.example.",
        ],
        [
            "Where should suppliers send their invoices?",
            "What's the email address for invoices?",
            "i got an invoice in my inbox, where do i forward it",
            "A new vendor asked for our billing address. Which email should they use?",
            "What's the accounts payable mailbox?",
        ],
        [
            "To which address do I forward a supplier's bill?",
            "Where do invoices have to be emailed?",
        ],
    ),
    fact(
        "fin_cost_centre",
        "Cost centre for Brennsby operations",
        ["CC-4120"],
        [
            "Brennsby operations book on cost centre CC-4120; all cost centres follow the format CC- plus four digits.",
            "The cost centre for Brennsby operations is CC-4120.",
            "Use CC-4120, the cost centre for operations in Brennsby.",
        ],
        [
            "Which cost centre do I use for Brennsby operations?",
            "What's the cost center code for the ops team at HQ?",
            "what cost centre should i put on my expense claim, i'm in brennsby operations",
            "I work in operations in Brennsby. What's my cost centre?",
            "Can you tell me the cost centre number for operations at headquarters?",
        ],
        [
            "Which cost centre code belongs to the Brennsby ops department?",
            "What do I enter as cost centre for operations costs at HQ?",
        ],
        showcase=True,
    ),
    fact(
        "fin_payslip",
        "Payslips",
        ["Paystream"],
        [
            "Payslips are available in Paystream from the 22nd of each month.",
            "You can download your payslip in Paystream; new ones appear on the 22nd.",
            "Your monthly payslip is published in Paystream on the 22nd.",
        ],
        [
            "Where can I find my payslip?",
            "How do I download my salary statement?",
            "where are the payslips",
            "I need last month's payslip for a rental application. Where do I get it?",
            "When does the new payslip come out?",
        ],
        [
            "Which portal shows my monthly pay slip?",
            "My bank wants proof of income. Where can I get my salary documents?",
            "When is this month's payslip published?",
        ],
    ),
    fact(
        "fin_travel_advance",
        "Travel advance",
        ["500"],
        [
            "You can request a travel advance of up to 500 EUR, at least 10 days before your trip.",
            "Travel advances of up to 500 EUR are possible if you request them 10 days before departure.",
            "Finance can pay you an advance of up to 500 EUR for a trip; apply at least 10 days beforehand.",
        ],
        [
            "Can I get an advance for a business trip?",
            "How much money can I get in advance before travelling?",
            "i don't want to pay for my trip out of pocket, is there an advance",
            "My trip to a customer is expensive. Can finance pay me something upfront?",
            "What's the maximum travel advance?",
        ],
        [
            "Is it possible to receive cash before a work journey?",
            "How large can an upfront payment for travel costs be?",
        ],
    ),
    fact(
        "fin_fiscal_year",
        "Fiscal year",
        ["1 July"],
        [
            "Altavia's fiscal year starts on 1 July and ends on 30 June.",
            "Our financial year runs from 1 July to 30 June.",
            "The fiscal year begins on 1 July each year and ends on 30 June.",
        ],
        [
            "When does our fiscal year start?",
            "Does the financial year follow the calendar year?",
            "when does the budget year begin",
            "I'm planning next year's spending. When does the new fiscal year kick off?",
            "What period does Altavia's financial year cover?",
        ],
        [
            "When does the accounting year begin at Altavia?",
            "Is our business year January to December?",
            "Which month does the financial year end in?",
        ],
    ),
]

DEPARTMENTS = {
    "hr": {"title": "HR policy assistant", "facts": HR},
    "it": {"title": "IT helpdesk", "facts": IT},
    "finance": {"title": "Finance: expenses, invoices and payroll dates", "facts": FINANCE},
}
